"""Reference switch (a): the kernel's Linux bridge.

Design: one `ip link add type bridge` in the root namespace, the hosts' veth
ends enslaved to it. STP stays off (the default), so ports forward at once.
It has no process, so CPU time and RSS are reported as n/a: its work is done
in softirq context, mostly on the sending host's CPU.

Note: if br_netfilter is loaded with bridge-nf-call-iptables=1, bridged IPv4
frames also pass the (possibly empty) iptables hooks; that is a host setting
we record but do not change, since other users of the machine may rely on it.
"""

from __future__ import annotations

from .hosts import disable_ipv6, set_up
from .resources import Resources, run


class LinuxBridge:
    kind = "linux"

    def __init__(self, res: Resources, name: str):
        self.res = res
        self.name = name
        self.notes: list[str] = []

    def pids(self) -> list[int]:
        return []  # in-kernel: no process to account

    def add_port(self, port: str) -> None:
        run(["ip", "link", "set", port, "master", self.name])
        set_up(port)


def start(res: Resources, ports: list[str], role: str = "lbr") -> LinuxBridge:
    name = res.link_name(role)
    res.add_link(name, ["type", "bridge", "stp_state", "0"])
    disable_ipv6(name)
    set_up(name)
    br = LinuxBridge(res, name)
    for port in ports:
        br.add_port(port)
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            if f.read().strip() == "1":
                br.notes.append("br_netfilter loaded, bridge-nf-call-iptables=1 (host setting, left as is)")
    except OSError:
        pass
    return br

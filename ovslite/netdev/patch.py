"""`patch`: a virtual cable between two bridges, inside the daemon.

A frame output to a patch port enters the peer port's bridge directly, in the
same event-loop pass: no syscall, no copy, no kernel device (so `ip link`
shows nothing, as with OVS's userspace datapath; use `ovslite-ctl capture`).
The switch calls `resolve` after every configuration change: the port is up
only while its peer exists, is a patch, is on another bridge and names this
port as its own peer. The datapath bounds how many bridges one frame may
cross in a pass (MAX_DEPTH), so patch loops cannot spin forever.
"""

from __future__ import annotations

from collections.abc import Callable

from ..names import check_ifname
from . import register
from .base import LinkStatus, Netdev, NetdevError


@register
class PatchNetdev(Netdev):
    type = "patch"
    options = frozenset({"peer"})

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.peer = self.config.get("peer", "")
        self._deliver: Callable[[list, int], None] | None = None
        #: the peer Port while the cable is up (the flow cache follows it)
        self.peer_port = None
        self._reason = "not open"

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        super().check_options(name, options)
        peer = options.get("peer")
        if not peer:
            raise ValueError(f"patch port {name} needs a peer (--peer NAME)")
        check_ifname(peer, "peer")
        if peer == name:
            raise ValueError(f"patch port {name} cannot be its own peer")

    def open(self) -> None:
        if not self.peer:
            raise NetdevError(f"patch port {self.name} needs a peer (--peer NAME)")
        if self.peer == self.name:
            raise NetdevError(f"patch port {self.name} cannot be its own peer")

    def close(self) -> None:
        self._deliver = None
        self.peer_port = None
        self._reason = "not open"

    def fileno(self) -> int | None:
        return None

    def recv_batch(self, limit: int) -> list:
        return []

    def send_batch(self, packets: list) -> int:
        return self.deliver_batch(packets, 0)

    def deliver_batch(self, packets: list, depth: int) -> int:
        """Hand `packets` to the peer's bridge now; `depth` counts bridges crossed."""
        deliver = self._deliver
        if deliver is None:
            return 0
        deliver(packets, depth)
        return len(packets)

    def resolve(self, port, ports: dict, datapath) -> None:
        peer = ports.get(self.peer)
        if peer is None:
            reason = f"peer {self.peer} does not exist"
        elif peer.type != self.type:
            reason = f"peer {self.peer} is not a patch port"
        elif peer.bridge is port.bridge:
            reason = f"peer {self.peer} is on the same bridge"
        elif peer.netdev.peer != self.name:
            reason = f"peer {self.peer} is patched to {peer.netdev.peer or 'nothing'}"
        elif not peer.admin_up:  # a cable whose far end is shut: no link on this end
            reason = f"peer {self.peer} is administratively down"
        else:
            reason = ""
        if reason:
            self._deliver = None
            self.peer_port = None
            self._reason = reason
        else:
            input_ = datapath.input
            self._deliver = lambda packets, depth: input_(peer, packets, depth)
            self.peer_port = peer
            self._reason = ""

    def status(self) -> LinkStatus:
        return LinkStatus(self._deliver is not None, self._reason)

    def info(self) -> dict[str, str]:
        return {"peer": self.peer}

"""Spanning tree at the switch's edges: the pure core (ovslite.stp) wired to ports,
the event loop, the MAC table, the flow cache and monitors.

One `BridgeStp` per bridge with `stp=on` or `rstp=on` (`StpManager.sync` keeps
them in step with the desired configuration after every change). Every port
but the internal one and mirror outputs takes part (as in OVS); `stp-enable=off` keeps a port in
the core as disabled, which forwards as if there were no spanning tree.

Frames: the bridge hands over every frame to 01:80:C2:00:00:00 before any
VLAN or state check (`take_bpdus`); they are fed to the core at once and never
forwarded. What the core decides is applied on a later loop pass (`_run`,
scheduled with call_soon), never inside a bridge's forwarding: BPDUs go out
through `Datapath.output` (blocked ports included: they bypass VLANs, split
horizon and the port's state), port flags `stp_forwarding` / `stp_learning`
are set (a change bumps the bridge's version, which ends every cached flow
through it), RSTP flushes and 802.1D fast ageing reach the MAC table, and state
and role changes reach monitors. The timer is one `call_later` per bridge at
the core's next deadline: none while STP is off, no polling.

Identities: the bridge id's MAC is the internal port's address when known
(else ovslite.netdev.tundev.stable_mac of its name); each port sends with a MAC derived
from the bridge and port names (locally administered), so a peer's MAC table
never learns the host's own address on a switch port from BPDUs.
"""

from __future__ import annotations

import hashlib

import structlog

from . import stpconfig
from .netdev.tundev import stable_mac
from .stp import BridgeParams, PortParams, SpanningTree
from .vnet import VNET_HDR_LEN

log = structlog.get_logger("ovslite.stp")

STP_MAC = b"\x01\x80\xc2\x00\x00\x00"
#: STP port numbers are 8 bits, RSTP's 12
MAX_PORT_NUMBER = {"stp": 255, "rstp": 4095}
_VNET_ZERO = bytes(VNET_HDR_LEN)
#: seconds: the soonest the timer runs again after a run (BPDUs answering BPDUs go
#: out on the next loop pass instead, through run_soon)
MIN_TIMER = 0.001
_MIN_FRAME = 60


def derived_mac(*names: str) -> bytes:
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6]


def bridge_params(mode: str, config: dict) -> BridgeParams:
    def get(key):
        return stpconfig.bridge_value(config, f"{mode}-{key}")

    return BridgeParams(priority=get("priority"), hello_time=get("hello-time"),
                        max_age=get("max-age"), forward_delay=get("forward-delay"),
                        transmit_hold_count=stpconfig.bridge_value(config, "rstp-transmit-hold-count"))


def port_params(mode: str, settings: dict) -> PortParams:
    def get(key):
        return stpconfig.port_value(settings, key)

    return PortParams(enabled=get("stp-enable"), priority=get(f"{mode}-port-priority"),
                      path_cost=get(f"{mode}-path-cost"), admin_edge=get("rstp-admin-edge"),
                      auto_edge=get("rstp-auto-edge"))


def link_speed(port) -> int | None:
    """Mb/s of the kernel device behind `port`, if it says (veth: 10000)."""
    device = port.netdev.kernel_device()
    if not device:
        return None
    try:
        with open(f"/sys/class/net/{device}/speed") as f:
            speed = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return speed if speed > 0 else None


def takes_part(port) -> bool:
    """As in OVS: the internal port and mirror output ports take no part."""
    return port.type != "internal" and not port.mirror_out


class BridgeStp:
    """One bridge's spanning tree: its core, its ports, its timer."""

    def __init__(self, switch, bridge, mode: str, config: dict):
        self.switch = switch
        self.bridge = bridge
        self.mode = mode
        self.loop = switch.datapath.loop
        self.clock = switch.datapath.clock
        internal = bridge.ports.get(bridge.name)
        mac = internal.local_mac if internal is not None and internal.local_mac else None
        self.mac = mac or stable_mac(bridge.name)
        self.params = bridge_params(mode, config)
        self.core = SpanningTree(mode, self.mac, self.params, self.clock())
        #: port name -> [Port object, its PortParams, link up, STP port number], as the
        #: core has them
        self.members: dict[str, tuple] = {}
        self._timer = None
        self._soon = None

    # -- configuration ----------------------------------------------------------------
    def sync(self, config: dict) -> None:
        now = self.clock()
        params = bridge_params(self.mode, config)
        if params != self.params:
            self.params = params
            self.core.set_params(params, now)
        changed = False
        wanted = {name: p for name, p in self.bridge.ports.items() if takes_part(p)}
        for name, member in list(self.members.items()):
            if wanted.get(name) is not member[0]:
                self._remove(name, now)
                changed = True
        for name, port in wanted.items():
            pp = port_params(self.mode, port.settings)
            member = self.members.get(name)
            if member is None:
                number = self._number(port)
                self.core.add_port(name, number, derived_mac(self.bridge.name, name),
                                   pp, port.up, link_speed(port), now)
                self.members[name] = [port, pp, port.up, number]
                port.stp_forwarding = self.core.forwarding(name)
                port.stp_learning = self.core.learning(name)
                changed = True
                continue
            if member[1] != pp:
                self.core.set_port_params(name, pp, now)
                member[1] = pp
            if member[2] != port.up:  # admin up/down, or a state missed meanwhile
                self.link(port)
        if changed:
            self.bridge.changed()  # new members start blocked: no cached flow may pass
        self.run_soon()

    def _number(self, port) -> int:
        limit = MAX_PORT_NUMBER[self.mode]
        used = {member[3] for member in self.members.values()}
        if port.number <= limit and port.number not in used:
            return port.number
        return min(n for n in range(1, limit + 1) if n not in used)

    def _remove(self, name: str, now: float) -> None:
        port = self.members.pop(name)[0]
        self.core.remove_port(name, now)
        port.stp_forwarding = port.stp_learning = True
        port.stp_block = None

    def close(self) -> None:
        for name in list(self.members):
            self._remove(name, self.clock())
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
        self.bridge.changed()

    # -- input ----------------------------------------------------------------------------
    def link(self, port) -> None:
        member = self.members.get(port.name)
        if member is not None and member[0] is port:
            member[2] = port.up
            self.core.set_link(port.name, port.up, self.clock(), link_speed(port) if port.up else None)
            self.run_soon()

    def take_bpdus(self, port, packets: list, now: float) -> list:
        """Feed `packets`' BPDUs to the core; the rest, to forward (or block)."""
        rest = []
        member = self.members.get(port.name)
        for pkt in packets:
            if pkt[VNET_HDR_LEN:VNET_HDR_LEN + 6] != STP_MAC:
                rest.append(pkt)
            elif member is not None and member[0] is port:
                self.core.receive(port.name, bytes(pkt[VNET_HDR_LEN:]), now)
            else:  # the internal port: consumed, as every BPDU is with STP on
                port.stats.drop("stp-not-enabled")
        if len(rest) != len(packets):
            self.run_soon()
        return rest

    # -- decisions applied ----------------------------------------------------------------
    def run_soon(self) -> None:
        if self._soon is None:
            self._soon = self.loop.call_soon(self._run)

    def _run(self) -> None:
        self._soon = None
        try:
            self.run(self.clock())
        except Exception:  # never let one bridge's spanning tree stop the loop
            log.exception("spanning tree step failed", bridge=self.bridge.name)
        self._schedule()

    def run(self, now: float) -> None:
        for name, frame in self.core.tick(now):
            self._send(name, frame)
        self._apply_states()
        for event in self.core.take_events():
            self._apply_event(event)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.next_deadline()
        if deadline != float("inf"):
            # A floor: a deadline still due after a run must not make the loop spin.
            delay = max(deadline - self.clock(), MIN_TIMER)
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._run()

    def _send(self, name: str, frame: bytes) -> None:
        member = self.members.get(name)
        if member is None:
            return
        port = member[0]
        if not port.up or name in self.switch.unopened:
            return
        if len(frame) < _MIN_FRAME:
            frame += bytes(_MIN_FRAME - len(frame))
        self.switch.datapath.output(port, [_VNET_ZERO + frame], 0)

    def _apply_states(self) -> None:
        changed = False
        for name, (port, *_) in self.members.items():
            fwd, learn = self.core.forwarding(name), self.core.learning(name)
            if fwd != port.stp_forwarding or learn != port.stp_learning:
                if not learn and port.stp_learning:
                    self.bridge.macs.flush(port)
                port.stp_forwarding, port.stp_learning = fwd, learn
                changed = True
            port.stp_block = None if fwd or not port.up else \
                f"{self.mode}: {self.core.role(name)}, {self.core.state(name)}"
        if changed:
            self.bridge.changed()  # cached reach and every flow through the bridge

    def _apply_event(self, event: dict) -> None:
        kind = event.get("event")
        br = self.bridge
        if kind == "flush":
            for name in event.get("ports", ()):
                member = self.members.get(name)
                if member is not None:
                    br.macs.flush(member[0])
            br.changed()
        elif kind == "fast-aging":
            br.stp_aging = float(event["seconds"])
            br.macs.aging = min(br.configured_aging, br.stp_aging)
            br.changed()
        elif kind == "normal-aging":
            br.stp_aging = None
            br.macs.aging = br.configured_aging
            br.changed()
        if kind in ("stp-state", "stp-role", "topology-change"):
            fields = {k: str(v) for k, v in event.items() if k in ("port", "old", "new")}
            if kind == "topology-change":
                fields["new"] = str(event.get("count", ""))
            log.info(kind, bridge=br.name, **fields)
            self.switch.notify(kind, bridge=br.name, **fields)

    # -- queries ------------------------------------------------------------------------
    def show(self) -> dict:
        return self.core.show()


class StpManager:
    """The switch's spanning trees, one per bridge that has one on."""

    def __init__(self, switch):
        self.switch = switch
        self.trees: dict[str, BridgeStp] = {}

    def sync(self) -> None:
        """After a reconcile: start, stop, re-mode or update each bridge's tree."""
        want = self.switch.desired["bridges"]
        for name, tree in list(self.trees.items()):
            br_conf = want.get(name)
            mode = stpconfig.mode(br_conf.get("config", {})) if br_conf else None
            if mode != tree.mode or self.switch.bridges.get(name) is not tree.bridge:
                tree.close()
                tree.bridge.stp = None
                del self.trees[name]
        for name, br_conf in want.items():
            config = br_conf.get("config", {})
            mode = stpconfig.mode(config)
            if mode is None:
                continue
            tree = self.trees.get(name)
            if tree is None:
                br = self.switch.bridges[name]
                tree = self.trees[name] = BridgeStp(self.switch, br, mode, config)
                br.stp = tree
                log.info("spanning tree on", bridge=name, mode=mode)
            tree.sync(config)

    def link(self, port) -> None:
        tree = self.trees.get(port.bridge.name) if port.bridge is not None else None
        if tree is not None:
            tree.link(port)

    def close(self) -> None:
        for tree in self.trees.values():
            tree.close()
            tree.bridge.stp = None
        self.trees.clear()

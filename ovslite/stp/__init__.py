"""Spanning tree, 802.1D (STP) and 802.1w / 802.1D-2004 clause 17 (RSTP): the pure core.

No sockets, no clock: every call takes `now` (seconds, any monotonic clock),
so unit tests drive several bridges through a fake LAN with a fake clock.
The caller (the datapath) does the I/O:

- `receive(name, frame, now)` with every whole Ethernet frame to
  01:80:C2:00:00:00 that port `name` receives. Malformed frames are counted per
  port and reason (`bpdu.MALFORMED_REASONS`, shown by `show()`) and ignored.
- `tick(now)` fires the timers due by `now` and returns the BPDUs to send, as
  (port name, whole Ethernet frame) pairs, source MAC the port's `mac`. It must
  run again by `next_deadline()` (which is at most `now` while output waits,
  e.g. after `receive` answered a BPDU, and +inf when nothing is pending).
- `forwarding(name)` / `learning(name)`: what the port may do with data frames.
  A port with STP disabled in its parameters takes no part and forwards and
  learns, as in OVS; a port whose link is down does neither.
- `take_events()`: changes since the last call, for `monitor` and the MAC table:
  {"event": "stp-state", "port", "old", "new"}, {"event": "stp-role", "port",
  "old", "new"}, {"event": "topology-change", "count"}, {"event": "flush",
  "ports": [names]} (RSTP: forget what these ports learned), {"event":
  "fast-aging", "seconds": N} and {"event": "normal-aging"} (802.1D: age the MAC
  table in N seconds while the root announces a topology change).
- `show()`: what ovs-appctl stp/show and rstp/show print, as a dict: mode,
  bridge and root ids ("8000.aabbccddeeff", priority, mac), root path cost,
  root port, the timers in use, topology change count and time; per port
  number, role, state, cost, priority, port id ("128.1"), designated root,
  cost, bridge and port, BPDUs sent and received, malformed BPDUs by reason,
  and for RSTP the protocol in use ("rstp", or "stp" after falling back) and
  whether it is an edge port.
- Added to the brief's interface: `set_link(..., speed_mbps=None)` (a default
  path cost follows the speed), `migration_check(name, now)` (RSTP mcheck:
  retry RST BPDUs on a port that fell back), `ports()`, PortParams'
  `point_to_point` (RSTP proposal/agreement needs it; default true), and
  `check(mode)` on both parameter classes.

BPDUs must reach `receive` on every port, also blocked and discarding ones
(that is how a blocked port keeps its information); the datapath never
forwards or floods them while spanning tree is on.

Parameters: `BridgeParams` and `PortParams` hold OVS's defaults;
`BridgeParams.check(mode)` / `PortParams.check(mode)` raise ValueError with a
one-line message for values out of OVS's ranges (vswitch.xml). Port numbers are
1-255 for STP (8 bits of the port id) and 1-4095 for RSTP (12 bits).
Port roles are root, designated, alternate, backup (RSTP), disabled; states
are disabled, blocking, listening, learning, forwarding (STP) and disabled,
discarding, learning, forwarding (RSTP).

Modules: bpdu (the wire format), common (ports, counters, events),
stp8021d (802.1D-1998 clause 8), rstp, rstp_port and rstp_tx (802.1D-2004
clause 17).

Interop, as seen against the Linux bridge (kernel STP) and Open vSwitch 3.1
(RSTP) on veth pairs: both elect and block as these machines do. The kernel
and OVS's stp.c drop RST BPDUs, so an RSTP bridge next to them falls back on
hearing their configuration BPDUs (and the 802.1D machine here drops RST
BPDUs too). OVS's alternate ports do not answer a proposal, so the designated
port facing one keeps proposing and, after 3 s, is taken for an edge port
(802.1D-2004's bridge detection) and forwards: harmless, the other end is
discarding, and the next BPDU from it ends the edge state. Limits: no MSTP
(MST BPDUs are read as RST BPDUs, the CIST only); one spanning tree per bridge.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bpdu import BpduError, decode_frame
from .common import bridge_id_fields

MODES = ("stp", "rstp")


def _check_range(name: str, value: int, low: int, high: int, step: int = 1) -> None:
    if not isinstance(value, int) or not low <= value <= high or value % step:
        steps = f" in steps of {step}" if step > 1 else ""
        raise ValueError(f"{name} must be an integer from {low} to {high}{steps}, not {value!r}")


@dataclass(frozen=True)
class BridgeParams:
    priority: int = 32768
    hello_time: int = 2
    max_age: int = 20
    forward_delay: int = 15
    transmit_hold_count: int = 6

    def check(self, mode: str) -> None:
        prefix = mode + "-"
        if mode == "rstp":
            _check_range("rstp-priority", self.priority, 0, 61440, 4096)
        else:
            _check_range("stp-priority", self.priority, 0, 65535)
        _check_range(prefix + "hello-time", self.hello_time, 1, 10)
        _check_range(prefix + "max-age", self.max_age, 6, 40)
        _check_range(prefix + "forward-delay", self.forward_delay, 4, 30)
        if mode == "rstp":
            _check_range("rstp-transmit-hold-count", self.transmit_hold_count, 1, 10)


@dataclass(frozen=True)
class PortParams:
    enabled: bool = True
    priority: int = 128
    path_cost: int | None = None  # None: from the link speed
    admin_edge: bool = False  # RSTP only
    auto_edge: bool = True  # RSTP only
    point_to_point: bool = True  # RSTP: full duplex link, proposal/agreement allowed

    def check(self, mode: str) -> None:
        if mode == "rstp":
            _check_range("rstp-port-priority", self.priority, 0, 240, 16)
            if self.path_cost is not None:
                _check_range("rstp-path-cost", self.path_cost, 1, 200000000)
        else:
            _check_range("stp-port-priority", self.priority, 0, 255)
            if self.path_cost is not None:
                _check_range("stp-path-cost", self.path_cost, 1, 65535)


class SpanningTree:
    """One bridge's spanning tree, in mode "stp" or "rstp"."""

    def __init__(self, mode: str, bridge_mac: bytes, params: BridgeParams, now: float):
        if mode not in MODES:
            raise ValueError(f"spanning tree mode must be stp or rstp, not {mode!r}")
        params.check(mode)
        self.mode = mode
        if mode == "stp":
            from .stp8021d import Stp as engine
        else:
            from .rstp import Rstp as engine
        self.engine = engine(bytes(bridge_mac), params, now)

    def set_params(self, params: BridgeParams, now: float) -> None:
        params.check(self.mode)
        self.engine.set_params(params, now)

    def add_port(self, name: str, number: int, mac: bytes, params: PortParams, up: bool,
                 speed_mbps: int | None, now: float) -> None:
        if name in self.engine.ports:
            raise ValueError(f"port {name} is already in the spanning tree")
        params.check(self.mode)
        if any(p.number == number for p in self.engine.ports.values()):
            raise ValueError(f"port {name}: number {number} is already in use")
        port = self.engine.make_port(name, number, mac, params, up, speed_mbps)
        self.engine.ports[name] = port
        self.engine.port_changed(port, now)

    def set_port_params(self, name: str, params: PortParams, now: float) -> None:
        params.check(self.mode)
        port = self._port(name)
        port.params = params
        self.engine.port_changed(port, now)

    def set_link(self, name: str, up: bool, now: float, speed_mbps: int | None = None) -> None:
        """Link up or down; a known speed (Mb/s) also updates a default path cost."""
        port = self._port(name)
        port.up = up
        if speed_mbps is not None:
            port.speed_mbps = speed_mbps
        self.engine.port_changed(port, now)

    def remove_port(self, name: str, now: float) -> None:
        self.engine.remove(self._port(name), now)

    def migration_check(self, name: str, now: float) -> None:
        """RSTP: send RST BPDUs again on a port that fell back to 802.1D (mcheck)."""
        if self.mode == "rstp":
            self.engine.migration_check(self._port(name), now)

    def receive(self, name: str, frame: bytes, now: float) -> None:
        port = self._port(name)
        try:
            bpdu = decode_frame(frame)
        except BpduError as err:
            port.malformed[err.reason] += 1
            return
        port.rx_bpdus += 1
        if port.params.enabled:
            self.engine.received(port, bpdu, now)

    def tick(self, now: float) -> list[tuple[str, bytes]]:
        self.engine.tick(now)
        return self.engine.take_output()

    def next_deadline(self) -> float:
        if self.engine.out_since is not None:
            return self.engine.out_since
        return self.engine.next_deadline()

    def forwarding(self, name: str) -> bool:
        return self.engine.forwarding(self._port(name))

    def learning(self, name: str) -> bool:
        return self.engine.learning(self._port(name))

    def state(self, name: str) -> str:
        return self.engine.state_of(self._port(name))

    def role(self, name: str) -> str:
        return self.engine.role_of(self._port(name))

    def take_events(self) -> list[dict]:
        return self.engine.take_events()

    def ports(self) -> list[str]:
        return list(self.engine.ports)

    def show(self) -> dict:
        engine = self.engine
        bridge = engine.show_bridge()
        root = bridge.pop("designated_root")
        return {
            "mode": self.mode,
            "bridge": {**bridge_id_fields(engine.bridge_id), "hello_time": engine.params.hello_time,
                       "max_age": engine.params.max_age,
                       "forward_delay": engine.params.forward_delay},
            "root": {**bridge_id_fields(root), "is_this_bridge": root == engine.bridge_id},
            **bridge,
            "topology_change_count": engine.tc_count,
            "topology_change_time": engine.tc_time,
            "ports": {name: self._show_port(port) for name, port in sorted(engine.ports.items())},
        }

    def _show_port(self, port) -> dict:
        shown = self.engine.show_port(port)
        for key in ("designated_root", "designated_bridge"):
            shown[key] = bridge_id_fields(shown[key])["id"]
        return shown

    def _port(self, name: str):
        try:
            return self.engine.ports[name]
        except KeyError:
            raise KeyError(f"no port {name} in the spanning tree") from None

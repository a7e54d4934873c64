"""IEEE 802.1D-1998 spanning tree: the protocol of clause 8, as its sample code.

The procedures keep the standard's names (8.6 and 8.7: configuration update,
root selection, designated port selection, port state selection, topology
change detection...) and follow Open vSwitch's lib/stp.c, itself the 802.1D
sample implementation, so the two behave alike on a LAN. Times are seconds
(floats) inside and 1/256 s on the wire. A timer is the time it notionally
started (its `origin`; the message age timer starts at the received message
age), and expires at origin + its timeout: timeouts follow the root's timers
as they change. `tick` fires due timers in time order, each at its own due
time, so a late tick gives the same result as a punctual one.

Port ids are priority << 8 | number (numbers 1-255, as in 802.1D-1998);
transmitted message age is the received one plus the time since plus 1/256 s,
as the Linux bridge and OVS do. Bridge timers are clamped as OVS does:
max age >= 2 * (hello + 1), forward delay >= max age / 2 + 1. Topology
change: while the root announces one, MAC entries age in forward delay
("fast-aging" event), then normally again ("normal-aging"). Received RST
BPDUs are ignored, as by the Linux bridge and OVS: an RSTP neighbour falls
back to 802.1D when it hears this bridge's configuration BPDUs.
"""

from __future__ import annotations

from functools import partial

from .bpdu import CONFIG, FLAG_TC, FLAG_TC_ACK, TCN, Bpdu, seconds_to_wire
from .common import EngineBase, PortBase, add_cost, bridge_id

HOLD_TIME = 1.0
MESSAGE_AGE_INCREMENT = 1 / 256
MAX_FIRINGS = 10000  # timer expiries handled by one tick


def path_cost_for_speed(speed_mbps: int | None) -> int:
    """802.1D-1998 table 8-5 values, as OVS's stp_convert_speed_to_cost."""
    speed = speed_mbps or 0
    for floor, cost in ((10000, 2), (1000, 4), (100, 19), (16, 62), (10, 100), (4, 250)):
        if speed >= floor:
            return cost
    return 19


class Port(PortBase):
    def __init__(self, *args):
        super().__init__(*args)
        self.state = "disabled"
        self.port_id = 0
        self.path_cost = 19
        self.designated_root = self.designated_bridge = 0
        self.designated_cost = self.designated_port = 0
        self.tc_ack = self.config_pending = False
        self.msg_age: float | None = None  # timer origins, None when stopped
        self.fwd_delay: float | None = None
        self.hold: float | None = None


class Stp(EngineBase):
    def __init__(self, mac: bytes, params, now: float):
        super().__init__(mac, params, now)
        self.bridge_id = bridge_id(params.priority, mac)
        self._bridge_times()
        self.max_age, self.hello_time, self.forward_delay = self.bridge_times
        self.designated_root = self.bridge_id
        self.root_path_cost = 0
        self.root_port: Port | None = None
        self.tc_detected = False
        self.topology_change = False
        self.hello_timer: float | None = now
        self.tcn_timer: float | None = None
        self.tc_timer: float | None = None

    def _bridge_times(self) -> None:
        p = self.params
        hello = min(max(p.hello_time, 1), 10)
        max_age = min(max(p.max_age, 2 * (hello + 1), 6), 40)
        fwd = min(max(p.forward_delay, max_age / 2 + 1, 4), 30)
        self.bridge_times = (float(max_age), float(hello), float(fwd))

    # -- caller's operations -------------------------------------------------------

    def set_params(self, params, now: float) -> None:
        self.now, self.params = now, params
        self._bridge_times()
        if self.is_root():
            self.max_age, self.hello_time, self.forward_delay = self.bridge_times
        new_id = bridge_id(params.priority, self.mac)
        if new_id != self.bridge_id:
            was_root = self.is_root()
            for p in self.enabled_ports():
                if self.is_designated(p):
                    p.designated_bridge = new_id
            self.bridge_id = new_id
            self.configuration_update()
            self.port_state_selection()
            if self.is_root() and not was_root:
                self.become_root_bridge()
        self.report()

    def make_port(self, name, number, mac, params, up, speed_mbps) -> Port:
        if not 1 <= number <= 255:
            raise ValueError(f"port {name}: 802.1D port numbers are 1-255, not {number}")
        return Port(name, number, mac, params, up, speed_mbps)

    def port_changed(self, port: Port, now: float) -> None:
        """Apply the port's parameters, link and speed (after add or any change)."""
        self.now = now
        port_id = (port.params.priority << 8) | port.number
        if port_id != port.port_id:
            if self.is_designated(port):
                port.designated_port = port_id
            port.port_id = port_id
            if self.bridge_id == port.designated_bridge and port_id < port.designated_port:
                self.become_designated_port(port)
                self.port_state_selection()
        cost = port.params.path_cost or path_cost_for_speed(port.speed_mbps)
        if cost != port.path_cost:
            port.path_cost = cost
            self.configuration_update()
            self.port_state_selection()
        if port.enabled and port.state == "disabled":
            self.initialize_port(port, "blocking")
            self.port_state_selection()
        elif not port.enabled and port.state != "disabled":
            self.disable_port(port)
        self.report()

    def remove(self, port: Port, now: float) -> None:
        self.now = now
        port.up = False
        if port.state != "disabled":
            self.disable_port(port)
        del self.ports[port.name]
        self.report()

    def received(self, port: Port, bpdu: Bpdu, now: float) -> None:
        self.now = now
        if port.state == "disabled":
            return
        if bpdu.kind == TCN:
            if self.is_designated(port):
                self.topology_change_detection()
                port.tc_ack = True
                self.transmit_config(port)
        elif bpdu.kind == CONFIG:
            self.received_config(port, bpdu)
        # RST BPDUs are ignored, as the Linux bridge and OVS's stp.c do: an RSTP
        # neighbour falls back to 802.1D when it hears our configuration BPDUs
        self.report()

    def tick(self, now: float) -> None:
        # One scan finds every timer due by `now`; they fire in time order, each
        # unless an earlier one stopped or restarted it (then a later scan sees
        # it). Bounded: a peer's zero timers could make a timer due again at once.
        fired = 0
        while fired < MAX_FIRINGS:
            due = sorted((t for t in self._timers() if t[0] <= now), key=lambda t: t[0])
            if not due:
                break
            for when, owner, attr, origin, fire in due:
                if getattr(owner, attr) is not origin:
                    continue
                self.now = when
                fire()
                fired += 1
        self.now = now
        self.report()

    def next_deadline(self) -> float:
        return min((t[0] for t in self._timers()), default=float("inf"))

    def _timers(self):
        """(due, owner, attribute, origin, expiry) for every running timer."""
        for attr, timeout, fire in (
                ("hello_timer", self.hello_time, self.hello_expiry),
                ("tcn_timer", self.bridge_times[1], self.tcn_expiry),
                ("tc_timer", self.max_age + self.forward_delay, self.tc_expiry)):
            origin = getattr(self, attr)
            if origin is not None:
                yield origin + timeout, self, attr, origin, fire
        for p in self.enabled_ports():
            for attr, timeout, fire in (("msg_age", self.max_age, self.message_age_expiry),
                                        ("fwd_delay", self.forward_delay,
                                         self.forward_delay_expiry),
                                        ("hold", HOLD_TIME, self.hold_expiry)):
                origin = getattr(p, attr)
                if origin is not None:
                    yield origin + timeout, p, attr, origin, partial(fire, p)

    # -- views ---------------------------------------------------------------------

    def state_of(self, port: Port) -> str:
        return port.state

    def role_of(self, port: Port) -> str:
        if port.state == "disabled":
            return "disabled"
        if port is self.root_port:
            return "root"
        return "designated" if self.is_designated(port) else "alternate"

    def aging_event(self, on: bool) -> dict:
        if on:
            return {"event": "fast-aging", "seconds": int(self.forward_delay)}
        return {"event": "normal-aging"}

    def enabled_ports(self):
        return [p for p in self.ports.values() if p.state != "disabled"]

    def is_root(self) -> bool:
        return self.designated_root == self.bridge_id

    def is_designated(self, p: Port) -> bool:
        return p.designated_bridge == self.bridge_id and p.designated_port == p.port_id

    # -- 8.6 and 8.7 ---------------------------------------------------------------

    def transmit_config(self, p: Port) -> None:
        if not self.is_root() and self.root_port is None:
            return
        if p.hold is not None:
            p.config_pending = True
            return
        if self.is_root():
            age = 0.0
        else:
            age = self.now - self.root_port.msg_age + MESSAGE_AGE_INCREMENT
        if age >= self.max_age:
            return
        flags = (FLAG_TC_ACK if p.tc_ack else 0) | (FLAG_TC if self.topology_change else 0)
        self.send(p, Bpdu(CONFIG, flags, self.designated_root, self.root_path_cost,
                          self.bridge_id, p.port_id, seconds_to_wire(age),
                          seconds_to_wire(self.max_age), seconds_to_wire(self.hello_time),
                          seconds_to_wire(self.forward_delay)))
        p.tc_ack = p.config_pending = False
        p.hold = self.now

    def supersedes_port_info(self, p: Port, b: Bpdu) -> bool:
        if b.root_id != p.designated_root:
            return b.root_id < p.designated_root
        if b.root_path_cost != p.designated_cost:
            return b.root_path_cost < p.designated_cost
        if b.bridge_id != p.designated_bridge:
            return b.bridge_id < p.designated_bridge
        return b.bridge_id != self.bridge_id or b.port_id <= p.designated_port

    def received_config(self, p: Port, b: Bpdu) -> None:
        if b.message_age >= b.max_age:
            return
        if self.supersedes_port_info(p, b):
            was_root = self.is_root()
            p.designated_root, p.designated_cost = b.root_id, b.root_path_cost
            p.designated_bridge, p.designated_port = b.bridge_id, b.port_id
            p.msg_age = self.now - b.message_age / 256
            self.configuration_update()
            self.port_state_selection()
            if was_root and not self.is_root():
                self.hello_timer = None
                if self.tc_detected:
                    self.tc_timer = None
                    self.transmit_tcn()
                    self.tcn_timer = self.now
            if p is self.root_port:
                self.max_age = b.max_age / 256
                self.hello_time = b.hello_time / 256
                self.forward_delay = b.forward_delay / 256
                self.topology_change = bool(b.flags & FLAG_TC)
                self.config_bpdu_generation()
                if b.flags & FLAG_TC_ACK:
                    self.tc_detected = False
                    self.tcn_timer = None
        elif self.is_designated(p):
            self.transmit_config(p)

    def config_bpdu_generation(self) -> None:
        for p in self.enabled_ports():
            if self.is_designated(p):
                self.transmit_config(p)

    def transmit_tcn(self) -> None:
        if self.root_port is not None:
            self.send(self.root_port, Bpdu(TCN))

    def configuration_update(self) -> None:
        self.root_selection()
        self.designated_port_selection()

    def root_selection(self) -> None:
        def key(p):
            return (p.designated_root, add_cost(p.designated_cost, p.path_cost),
                    p.designated_bridge, p.designated_port, p.port_id)
        candidates = [p for p in self.enabled_ports()
                      if not self.is_designated(p) and p.designated_root < self.bridge_id]
        root = min(candidates, key=key, default=None)
        self.root_port = root
        if root is None:
            self.designated_root, self.root_path_cost = self.bridge_id, 0
        else:
            self.designated_root = root.designated_root
            self.root_path_cost = add_cost(root.designated_cost, root.path_cost)

    def designated_port_selection(self) -> None:
        for p in self.enabled_ports():
            if (self.is_designated(p) or p.designated_root != self.designated_root
                    or (self.root_path_cost, self.bridge_id, p.port_id)
                    <= (p.designated_cost, p.designated_bridge, p.designated_port)):
                self.become_designated_port(p)

    def become_designated_port(self, p: Port) -> None:
        p.designated_root, p.designated_cost = self.designated_root, self.root_path_cost
        p.designated_bridge, p.designated_port = self.bridge_id, p.port_id

    def port_state_selection(self) -> None:
        for p in self.enabled_ports():
            if p is self.root_port:
                p.config_pending = p.tc_ack = False
                self.make_forwarding(p)
            elif self.is_designated(p):
                p.msg_age = None
                self.make_forwarding(p)
            else:
                p.config_pending = p.tc_ack = False
                self.make_blocking(p)

    def make_forwarding(self, p: Port) -> None:
        if p.state == "blocking":
            p.state = "listening"
            p.fwd_delay = self.now

    def make_blocking(self, p: Port) -> None:
        if p.state not in ("disabled", "blocking"):
            if p.state in ("forwarding", "learning"):
                self.topology_change_detection()
            p.state = "blocking"
            p.fwd_delay = None

    def topology_change_detection(self) -> None:
        if self.is_root():
            self.topology_change = True
            self.tc_timer = self.now
        elif not self.tc_detected:
            self.transmit_tcn()
            self.tcn_timer = self.now
        if not self.tc_detected:
            self.note_topology_change(self.now)
        self.tc_detected = True

    # -- timer expiries (8.7) --------------------------------------------------------

    def hello_expiry(self) -> None:
        self.config_bpdu_generation()
        self.hello_timer = self.now

    def message_age_expiry(self, p: Port) -> None:
        p.msg_age = None
        was_root = self.is_root()
        self.become_designated_port(p)
        self.configuration_update()
        self.port_state_selection()
        if self.is_root() and not was_root:
            self.become_root_bridge()

    def forward_delay_expiry(self, p: Port) -> None:
        p.fwd_delay = None
        if p.state == "listening":
            p.state = "learning"
            p.fwd_delay = self.now
        elif p.state == "learning":
            p.state = "forwarding"
            if any(q.designated_bridge == self.bridge_id for q in self.enabled_ports()):
                self.topology_change_detection()

    def tcn_expiry(self) -> None:
        self.transmit_tcn()
        self.tcn_timer = self.now

    def tc_expiry(self) -> None:
        self.tc_timer = None
        self.tc_detected = self.topology_change = False

    def hold_expiry(self, p: Port) -> None:
        p.hold = None
        if p.config_pending:
            self.transmit_config(p)

    # -- port initialisation (8.8) ----------------------------------------------------

    def initialize_port(self, p: Port, state: str) -> None:
        self.become_designated_port(p)
        p.state = state
        p.tc_ack = p.config_pending = False
        p.msg_age = p.fwd_delay = p.hold = None

    def disable_port(self, p: Port) -> None:
        was_root = self.is_root()
        self.become_designated_port(p)
        p.state = "disabled"
        p.tc_ack = p.config_pending = False
        p.msg_age = p.fwd_delay = None
        self.configuration_update()
        self.port_state_selection()
        if self.is_root() and not was_root:
            self.become_root_bridge()

    def become_root_bridge(self) -> None:
        self.max_age, self.hello_time, self.forward_delay = self.bridge_times
        self.topology_change_detection()
        self.tcn_timer = None
        self.config_bpdu_generation()
        self.hello_timer = self.now

    # -- stp/show ------------------------------------------------------------------

    def show_bridge(self) -> dict:
        root_port = self.root_port
        return {"root_path_cost": self.root_path_cost,
                "root_port": root_port.name if root_port else None,
                "designated_root": self.designated_root,
                "hello_time": self.hello_time, "max_age": self.max_age,
                "forward_delay": self.forward_delay,
                "bridge_hello_time": self.bridge_times[1], "bridge_max_age": self.bridge_times[0],
                "bridge_forward_delay": self.bridge_times[2],
                "topology_change": self.topology_change}

    def show_port(self, p: Port) -> dict:
        return {**self.port_show(p), "cost": p.path_cost, "priority": p.port_id >> 8,
                "port_id": f"{p.port_id >> 8}.{p.port_id & 0xff}",
                "designated_root": p.designated_root, "designated_cost": p.designated_cost,
                "designated_bridge": p.designated_bridge,
                "designated_port": f"{p.designated_port >> 8}.{p.designated_port & 0xff}"}

"""RSTP, 802.1D-2004 clause 17: the bridge's part (Port Role Selection, timers, receive).

The per-port machines are in rstp_port (information, role transitions, state)
and rstp_tx (transmit, protocol migration, edge detection, topology change).
`run` makes every machine of every port, and role selection, take transitions
until none moves; it runs after a received BPDU, a configuration change and
each one-second tick of the port timers. So a proposal is answered by an
agreement within the same `receive` call, and a point-to-point link with a
peer that agrees forwards in the time the BPDUs take, not in forward delay.

Priority vectors are tuples (root id, root path cost, designated bridge id,
designated port id), compared as tuples; the receiving port's id breaks ties
in root port selection. Port ids are priority << 8 | number with numbers
1-4095 and priorities 0-240 in steps of 16. Times are whole seconds; BPDUs
carry them in 1/256 s. Message age grows by 1 s per bridge, as 802.1D-2004
says; received times are truncated to whole seconds, as OVS reads them.
Path cost defaults to 20,000,000 / (link speed in Mb/s) (table 17-3).
"""

from __future__ import annotations

from .bpdu import RST, Bpdu
from .common import MAC_BITS, EngineBase, add_cost, bridge_id
from .rstp_port import TIMERS, Port, port_information, port_role_transitions, port_state_transition
from .rstp_tx import bridge_detection, port_transmit, protocol_migration, topology_change

MACHINES = (port_information, port_role_transitions, port_state_transition, topology_change,
            protocol_migration, bridge_detection)
MAX_ROUNDS = 1000  # a run settles in a few rounds; this bounds a bug, not the protocol
MAX_CATCH_UP = 300  # seconds of timer ticks replayed after a long pause


def path_cost_for_speed(speed_mbps: int | None) -> int:
    speed = speed_mbps or 0
    for floor, cost in ((10_000_000, 2), (1_000_000, 20), (100_000, 200), (10_000, 2000),
                        (1000, 20000), (100, 200000), (10, 2_000_000), (1, 20_000_000)):
        if speed >= floor:
            return cost
    return 200000


class Rstp(EngineBase):
    def __init__(self, mac: bytes, params, now: float):
        super().__init__(mac, params, now)
        self.bridge_id = bridge_id(params.priority, mac)
        self.root_priority = (self.bridge_id, 0, self.bridge_id, 0)
        self.root_port: Port | None = None
        self.root_times = self.bridge_times()
        self.next_second = now + 1
        self.flushed: list[str] = []
        self.last_tc_rx: float | None = None

    def bridge_times(self) -> tuple[int, int, int, int]:
        p = self.params
        return (0, p.max_age, p.hello_time, p.forward_delay)

    # -- caller's operations -------------------------------------------------------

    def set_params(self, params, now: float) -> None:
        self.now, self.params = now, params
        self.bridge_id = bridge_id(params.priority, self.mac)
        for p in self.ports.values():
            p.reselect, p.selected = True, False
        self.run()

    def make_port(self, name, number, mac, params, up, speed_mbps) -> Port:
        if not 1 <= number <= 4095:
            raise ValueError(f"port {name}: RSTP port numbers are 1-4095, not {number}")
        port = Port(name, number, mac, params, up, speed_mbps)
        port.designated_times = port.port_times = self.bridge_times()
        return port

    def port_changed(self, port: Port, now: float) -> None:
        self.now = now
        port_id = (port.params.priority << 8) | port.number
        cost = port.params.path_cost or path_cost_for_speed(port.speed_mbps)
        if (port_id, cost) != (port.port_id, port.path_cost):
            port.port_id, port.path_cost = port_id, cost
            port.reselect, port.selected = True, False
        if port.params.admin_edge != port.admin_edge:  # BDM starts again from BEGIN
            port.admin_edge = port.params.admin_edge
            port.bdm = "EDGE" if port.admin_edge else "NOT_EDGE"
            port.oper_edge = port.admin_edge
        self.run()

    def remove(self, port: Port, now: float) -> None:
        self.now = now
        port.up = False
        self.run()
        del self.ports[port.name]
        for p in self.ports.values():
            p.reselect, p.selected = True, False
        self.run()

    def migration_check(self, port: Port, now: float) -> None:
        """mcheck: try RST BPDUs again on a port that fell back to 802.1D."""
        self.now = now
        port.mcheck = True
        self.run()

    def received(self, p: Port, bpdu: Bpdu, now: float) -> None:
        """Port Receive (17.23) and updtBPDUVersion."""
        self.now = now
        if not p.enabled:
            return
        if bpdu.kind == RST:
            p.rcvd_rstp = True
        else:
            p.rcvd_stp = True
        p.oper_edge = False
        p.rcvd_msg = True
        p.edge_delay_while = 3
        p.msg = bpdu
        p.msg_priority = (bpdu.root_id, bpdu.root_path_cost, bpdu.bridge_id, bpdu.port_id)
        p.msg_times = (bpdu.message_age >> 8, bpdu.max_age >> 8, max(1, bpdu.hello_time >> 8),
                       bpdu.forward_delay >> 8)
        self.run()

    def tick(self, now: float) -> None:
        if now - self.next_second > MAX_CATCH_UP:
            self.next_second = now - MAX_CATCH_UP
        while now >= self.next_second:
            self.now = self.next_second
            for p in self.ports.values():  # Port Timers (17.22)
                for timer in TIMERS:
                    value = getattr(p, timer)
                    if value > 0:
                        setattr(p, timer, value - 1)
                if p.tx_count > 0:
                    p.tx_count -= 1
            self.run()
            self.next_second += 1
        self.now = now

    def next_deadline(self) -> float:
        return self.next_second

    # -- the machines ----------------------------------------------------------------

    def run(self) -> None:
        ports = list(self.ports.values())
        for _ in range(MAX_ROUNDS):
            moved = self.role_selection(ports)
            for p in ports:
                for machine in MACHINES:
                    moved = machine(self, p) or moved
            if moved:
                continue
            # transmit only once the rest is settled: one BPDU with the final
            # flags rather than one per intermediate step (txHoldCount is small)
            for p in ports:
                moved = port_transmit(self, p) or moved
            if not moved:
                break
        if self.flushed:
            self.events.append({"event": "flush", "ports": sorted(set(self.flushed))})
            self.flushed = []
        self.report()

    def role_selection(self, ports) -> bool:
        """Port Role Selection (17.28): updtRolesTree, then setSelectedTree."""
        if not any(p.reselect for p in ports):
            return False
        for p in ports:
            p.reselect = False
        self.updt_roles_tree(ports)
        if not any(p.reselect for p in ports):
            for p in ports:
                p.selected = True
        return True

    def updt_roles_tree(self, ports) -> None:
        own_mac = self.bridge_id & MAC_BITS
        best, root_port = (self.bridge_id, 0, self.bridge_id, 0, 0), None
        for p in ports:
            if p.info_is != "received" or (p.port_priority[2] & MAC_BITS) == own_mac:
                continue
            root, cost, bridge, port_id = p.port_priority
            candidate = (root, add_cost(cost, p.path_cost), bridge, port_id, p.port_id)
            if candidate < best:
                best, root_port = candidate, p
        self.root_priority, self.root_port = best[:4], root_port
        if root_port is None:
            self.root_times = self.bridge_times()
        else:
            age, max_age, hello, fwd = root_port.port_times
            self.root_times = (age + 1, max_age, hello, fwd)
        designated_times = self.root_times[:2] + (self.params.hello_time, self.root_times[3])
        for p in ports:
            p.designated_priority = (best[0], best[1], self.bridge_id, p.port_id)
            p.designated_times = designated_times
            if p.info_is == "disabled":
                p.selected_role = "disabled"
            elif p.info_is == "aged":
                p.selected_role, p.updt_info = "designated", True
            elif p.info_is == "mine":
                p.selected_role = "designated"
                if p.port_priority != p.designated_priority or p.port_times != designated_times:
                    p.updt_info = True
            elif p is root_port:
                p.selected_role, p.updt_info = "root", False
            elif p.designated_priority >= p.port_priority:
                from_us = (p.port_priority[2] & MAC_BITS) == own_mac
                p.selected_role, p.updt_info = ("backup" if from_us else "alternate"), False
            else:
                p.selected_role, p.updt_info = "designated", True

    # -- what the machines ask of the bridge (17.20, 17.21) ------------------------------

    def fwd_delay(self, p: Port) -> int:
        return p.designated_times[3]

    def hello_time(self, p: Port) -> int:
        return p.designated_times[2]

    def max_age(self, p: Port) -> int:
        return p.designated_times[1]

    def forward_delay(self, p: Port) -> int:
        return self.hello_time(p) if p.send_rstp else self.fwd_delay(p)

    def edge_delay(self, p: Port) -> int:
        return 3 if p.params.point_to_point else self.max_age(p)

    def re_rooted(self, p: Port) -> bool:
        return all(q.rr_while == 0 for q in self.ports.values() if q is not p)

    def all_synced(self, p: Port) -> bool:
        """allSynced as 802.1Q-2005 defines it: every port but the given one (root or
        alternate) or but the root port (designated) is synced."""
        ports = self.ports.values()
        if not all(q.selected and q.role == q.selected_role and not q.updt_info for q in ports):
            return False
        skip = p if p.role in ("root", "alternate", "backup") else self.root_port
        return all(q.synced for q in ports if q is not skip)

    def set_sync_tree(self) -> None:
        for p in self.ports.values():
            p.sync = True

    def set_re_root_tree(self) -> None:
        for p in self.ports.values():
            p.re_root = True

    def set_tc_prop_tree(self, caller: Port) -> None:
        for p in self.ports.values():
            if p is not caller:
                p.tc_prop = True

    def note_tc(self, received: bool) -> None:
        """Count a topology change once: several ports detecting it at one instant,
        or the TC flag arriving in every hello while a change lasts (an 802.1D
        root sets it for max age + forward delay), are one change."""
        last_rx, self.last_tc_rx = self.last_tc_rx, (self.now if received else self.last_tc_rx)
        if self.tc_time == self.now:
            return
        if received and last_rx is not None and self.now - last_rx <= 2 * self.root_times[2]:
            return
        self.note_topology_change(self.now)

    def flush(self, ports) -> None:
        self.flushed += [p.name for p in ports]

    # -- views -------------------------------------------------------------------------

    @property
    def topology_change(self) -> bool:
        return any(p.tc_while for p in self.ports.values())

    def aging_event(self, on: bool) -> None:
        return None  # RSTP flushes instead

    def state_of(self, p: Port) -> str:
        if not p.enabled:
            return "disabled"
        return "forwarding" if p.forwarding else "learning" if p.learning else "discarding"

    def role_of(self, p: Port) -> str:
        return p.role if p.enabled else "disabled"

    def show_bridge(self) -> dict:
        age, max_age, hello, fwd = self.root_times
        return {"root_path_cost": self.root_priority[1],
                "root_port": self.root_port.name if self.root_port else None,
                "designated_root": self.root_priority[0],
                "hello_time": hello, "max_age": max_age, "forward_delay": fwd,
                "message_age": age, "topology_change": self.topology_change}

    def show_port(self, p: Port) -> dict:
        _, cost, bridge, port_id = p.port_priority
        return {**self.port_show(p), "cost": p.path_cost, "priority": p.params.priority,
                "port_id": f"{p.port_id >> 8 & 0xf0}.{p.port_id & 0xfff}",
                "designated_root": p.port_priority[0], "designated_cost": cost,
                "designated_bridge": bridge,
                "designated_port": f"{port_id >> 8 & 0xf0}.{port_id & 0xfff}",
                "protocol": "rstp" if p.send_rstp else "stp", "edge": p.oper_edge,
                "point_to_point": p.params.point_to_point}

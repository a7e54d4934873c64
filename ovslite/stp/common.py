"""What the 802.1D and the RSTP engines share: ports, counters, output, events.

An engine keeps its ports by name; each `PortBase` holds the caller's view of
the port (number, MAC, parameters, link state, speed) and the counters that
stp/show prints. BPDUs an engine sends are queued (`send`) and handed out by
`SpanningTree.tick`; events are derived by comparing each port's state and
role, and the bridge's topology-change flag, with what was last reported, so
the protocol code never has to remember to report a change.
"""

from __future__ import annotations

from collections import Counter

from .bpdu import Bpdu, encode_frame

MAC_BITS = (1 << 48) - 1
MAX_COST = 0xFFFFFFFF  # the BPDU's 32-bit field


def add_cost(received: int, port_cost: int) -> int:
    """Root path cost through a port; saturates, so a peer's huge cost still encodes."""
    return min(received + port_cost, MAX_COST)


def bridge_id(priority: int, mac: bytes) -> int:
    return (priority << 48) | int.from_bytes(mac, "big")


def format_bridge_id(value: int) -> str:
    """As the Linux bridge prints it: 8000.aabbccddeeff."""
    return f"{value >> 48:04x}.{value & MAC_BITS:012x}"


def bridge_id_fields(value: int) -> dict:
    mac = (value & MAC_BITS).to_bytes(6, "big")
    return {"id": format_bridge_id(value), "priority": value >> 48, "mac": mac.hex(":")}


class PortBase:
    def __init__(self, name, number, mac, params, up, speed_mbps):
        self.name = name
        self.number = number
        self.mac = bytes(mac)
        self.params = params
        self.up = up
        self.speed_mbps = speed_mbps
        self.tx_bpdus = 0
        self.rx_bpdus = 0
        self.malformed: Counter[str] = Counter()
        self.reported_state = "disabled"
        self.reported_role = "disabled"

    @property
    def enabled(self) -> bool:
        """Taking part in the protocol: enabled for STP and its link up."""
        return self.params.enabled and self.up

    def counters(self) -> dict:
        return {"tx_bpdus": self.tx_bpdus, "rx_bpdus": self.rx_bpdus,
                "malformed": dict(sorted(self.malformed.items()))}


class EngineBase:
    """Port bookkeeping, output queue and event derivation for one protocol."""

    def __init__(self, mac: bytes, params, now: float):
        self.mac = bytes(mac)
        self.params = params
        self.ports: dict[str, PortBase] = {}
        self.out: list[tuple[str, bytes]] = []
        self.out_since: float | None = None
        self.events: list[dict] = []
        self.reported_tc = False
        self.tc_count = 0
        self.tc_time: float | None = None
        self.now = now

    # subclasses provide: state_of(port), role_of(port), topology_change (bool),
    # aging_event(on) -> dict

    def send(self, port: PortBase, bpdu: Bpdu) -> None:
        port.tx_bpdus += 1
        if self.out_since is None:
            self.out_since = self.now
        self.out.append((port.name, encode_frame(port.mac, bpdu)))

    def take_output(self) -> list[tuple[str, bytes]]:
        out, self.out, self.out_since = self.out, [], None
        return out

    def note_topology_change(self, now: float) -> None:
        self.tc_count += 1
        self.tc_time = now
        self.events.append({"event": "topology-change", "count": self.tc_count})

    def report(self) -> None:
        """Append an event for every state, role and aging change since the last call."""
        for port in self.ports.values():
            state, role = self.state_of(port), self.role_of(port)
            if state != port.reported_state:
                self.events.append({"event": "stp-state", "port": port.name,
                                    "old": port.reported_state, "new": state})
                port.reported_state = state
            if role != port.reported_role:
                self.events.append({"event": "stp-role", "port": port.name,
                                    "old": port.reported_role, "new": role})
                port.reported_role = role
        if self.topology_change != self.reported_tc:
            self.reported_tc = self.topology_change
            event = self.aging_event(self.reported_tc)
            if event:
                self.events.append(event)

    def take_events(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def forwarding(self, port: PortBase) -> bool:
        if not port.params.enabled:
            return True  # not taking part in spanning tree, as in OVS
        return self.state_of(port) == "forwarding"

    def learning(self, port: PortBase) -> bool:
        if not port.params.enabled:
            return True
        return self.state_of(port) in ("learning", "forwarding")

    def port_show(self, port: PortBase) -> dict:
        return {"number": port.number, "role": self.role_of(port), "state": self.state_of(port),
                **port.counters()}

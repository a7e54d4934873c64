"""The forwarding core: a learning bridge that returns decisions, does no I/O.

`Bridge.forward(in_port, packets, now)` takes one received batch and returns
{output Port: [packets]}; the datapath does the sending. Nothing here touches a
socket or reads a clock, so the whole switching logic is unit-testable.

Per frame the work is two slices, at most two dict probes and list appends:
the ports a flood reaches are precomputed per ingress port whenever the port
set or a port's state changes, and the learning probe is skipped when a frame
has the same source as the one before it (the common case in a batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .mactable import DEFAULT_AGING, DEFAULT_SIZE, MacTable
from .vnet import MIN_PACKET_LEN

DEFAULT_VLAN = 0


@dataclass(eq=False)
class PortStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0
    #: drop reason -> count (rx and tx); the totals above include them
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1, tx: bool = False) -> None:
        if tx:
            self.tx_dropped += n
        else:
            self.rx_dropped += n
        self.drops[reason] = self.drops.get(reason, 0) + n

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "drops"}


class Port:
    """A bridge port: identity, state and counters. `netdev` is opaque here."""

    __slots__ = ("name", "type", "netdev", "number", "up", "reason", "stats", "bridge")

    def __init__(self, name: str, type: str = "system", netdev=None, number: int = 0):
        self.name = name
        self.type = type
        self.netdev = netdev
        self.number = number
        self.up = False
        self.reason = "not open"
        self.stats = PortStats()
        self.bridge: Bridge | None = None

    def __repr__(self) -> str:
        return f"Port({self.name!r})"


class Bridge:
    def __init__(self, name: str, aging: float = DEFAULT_AGING, table_size: int = DEFAULT_SIZE):
        self.name = name
        self.macs = MacTable(aging, table_size)
        self.ports: dict[str, Port] = {}
        self._flood: dict[Port, tuple[Port, ...]] = {}
        self._next_number = 1

    # -- configuration ------------------------------------------------------
    def add_port(self, port: Port) -> Port:
        if port.name in self.ports:
            raise ValueError(f"port {port.name} already on bridge {self.name}")
        port.number = self._next_number
        self._next_number += 1
        port.bridge = self
        self.ports[port.name] = port
        self._recompute()
        return port

    def remove_port(self, name: str) -> Port:
        port = self.ports.pop(name)
        self.macs.flush(port, include_static=True)
        port.bridge = None
        self._recompute()
        return port

    def set_port_state(self, port: Port, up: bool, reason: str = "") -> bool:
        """Returns True if the state changed."""
        if up:
            reason = ""
        if port.up == up and port.reason == reason:
            return False
        changed = port.up != up
        port.up = up
        port.reason = reason
        if changed:
            if not up:
                self.macs.flush(port)
            self._recompute()
        return True

    def _recompute(self) -> None:
        live = [p for p in self.ports.values() if p.up]
        self._flood = {p: tuple(q for q in live if q is not p) for p in self.ports.values()}

    # -- forwarding ---------------------------------------------------------
    def forward(self, in_port: Port, packets: list, now: float) -> dict[Port, list]:
        """Decide where each packet of one received batch goes."""
        outputs: dict[Port, list] = {}
        if not in_port.up:
            in_port.stats.drop("port-down", len(packets))
            return outputs
        flood = self._flood[in_port]
        macs = self.macs
        entries = macs.entries
        aging = macs.aging
        vlan = DEFAULT_VLAN
        last_src = None
        runts = 0
        for pkt in packets:
            if len(pkt) < MIN_PACKET_LEN:
                runts += 1
                continue
            src = pkt[16:22]
            if src != last_src:
                last_src = src
                if not src[0] & 1:  # never learn a group address
                    macs.learn(vlan, src, in_port, now)
            dst = pkt[10:16]
            if not dst[0] & 1:
                entry = entries.get((vlan, dst))
                if entry is not None and (entry.static or now - entry.used <= aging):
                    out = entry.port
                    if out is in_port or not out.up:
                        continue  # the destination is behind the ingress port: filter
                    batch = outputs.get(out)
                    if batch is None:
                        outputs[out] = [pkt]
                    else:
                        batch.append(pkt)
                    continue
            for out in flood:
                batch = outputs.get(out)
                if batch is None:
                    outputs[out] = [pkt]
                else:
                    batch.append(pkt)
        if runts:
            in_port.stats.drop("runt", runts)
        return outputs

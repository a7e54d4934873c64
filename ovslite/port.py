"""A bridge port as the forwarding core sees it: identity, switching settings, state,
counters (PortStats, with drops by reason) and storm control (TokenBucket).

Settings arrive typed (ovslite.portconfig) and are turned once into what the
per-frame loop reads (`untagged_vlan`, `tagged_ok`, the flood flags, `max_len`);
`egress_tagged` says how a VLAN leaves. The bridge (ovslite.bridge) owns the
ports and decides; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import portconfig, vnet

if TYPE_CHECKING:
    from .bridge import Bridge


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


class TokenBucket:
    """Storm control: `rate` frames per second, bursts of up to one second's worth."""

    __slots__ = ("rate", "tokens", "last")

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.tokens = self.rate
        self.last: float | None = None

    def take(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Port:
    """A bridge port: identity, switching settings, state and counters.

    `netdev` is opaque here. `up` is what forwarding uses: the administrative
    state and the link state together.
    """

    __slots__ = ("name", "type", "netdev", "number", "up", "reason", "link_up", "link_reason",
                 "stats", "bridge", "settings", "mode", "tag", "trunks", "untagged_vlan",
                 "tagged_ok", "learning", "flood", "mcast_flood", "bcast_flood", "isolated",
                 "admin_up", "storm", "max_len", "local_mac", "split_horizon", "oversize_reason",
                 "mirror_out", "stp_forwarding", "stp_learning", "stp_block")

    def __init__(self, name: str, type: str = "system", netdev=None, number: int = 0):
        self.name = name
        self.type = type
        self.netdev = netdev
        self.number = number
        self.up = False
        self.reason = "not open"
        self.link_up = False
        self.link_reason = "not open"
        self.stats = PortStats()
        self.bridge: Bridge | None = None
        #: the MAC of the host's own interface behind this port (an internal port), or None
        self.local_mac: bytes | None = None
        #: the drop reason for frames above max_len ("too-big" on a tunnel port)
        self.oversize_reason = "mtu"
        #: a mirror's output port: copies only, nothing forwarded to or from it (ovslite.mirror)
        self.mirror_out = False
        #: spanning tree (ovslite.stpport): may forward / learn; why not, for `show`
        self.stp_forwarding = self.stp_learning = True
        self.stp_block: str | None = None
        self.configure({})

    def configure(self, settings: dict) -> None:
        """Apply typed settings (ovslite.portconfig.parse output, merged)."""
        s = self.settings = dict(settings)
        self.mode = portconfig.vlan_mode(s)
        self.tag = s.get("tag")
        trunks = s.get("trunks")
        self.trunks = frozenset(trunks) if trunks else None  # None: every VLAN
        if self.mode == "access":
            self.untagged_vlan, self.tagged_ok = self.tag, frozenset()
        elif self.mode == "trunk":
            self.untagged_vlan = 0 if self.trunks is None or 0 in self.trunks else None
            self.tagged_ok = self.trunks
        else:  # native-tagged / native-untagged
            self.untagged_vlan = self.tag
            self.tagged_ok = None if self.trunks is None else self.trunks | {self.tag}
        self.learning = s.get("learning", True)
        self.flood = s.get("flood", True)
        self.mcast_flood = s.get("mcast-flood", True)
        self.bcast_flood = s.get("bcast-flood", True)
        self.isolated = s.get("isolated", False)
        self.admin_up = s.get("admin", "up") == "up"
        # In the split-horizon group (bridge.Reach): a frame received on one of its
        # ports never leaves by another. Tunnel ports by default (netdev.split_horizon).
        self.split_horizon = s.get("split-horizon", bool(getattr(self.netdev, "split_horizon", False)))
        rate = s.get("storm-control")
        self.storm = TokenBucket(rate) if rate else None
        mtu = s.get("mtu")
        # Largest frame (with vnet header and one tag) this port takes; GSO frames excepted.
        self.max_len = mtu + vnet.VNET_HDR_LEN + vnet.ETH_HLEN + 4 if mtu else None

    def egress_tagged(self, vlan: int) -> bool | None:
        """How frames of `vlan` leave this port: True tagged, False untagged, None not at all."""
        mode = self.mode
        if mode == "access":
            return False if vlan == self.tag else None
        if mode != "trunk":
            if vlan == self.tag:
                return mode == "native-tagged"
            if vlan == 0:
                return None  # as OVS: a native port's untagged frames belong to its tag
        if self.trunks is not None and vlan not in self.trunks:
            return None
        return vlan != 0

    def __repr__(self) -> str:
        return f"Port({self.name!r})"

"""The forwarding core: a learning, VLAN-aware bridge that returns decisions, does no I/O.

`Bridge.forward(in_port, packets, now)` takes one received batch and returns
{output Port: [packets]}; the datapath does the sending. Nothing here touches a
socket or reads a clock, so the whole switching logic is unit-testable.

Per frame: the VLAN is read from the frame (or the port's access tag), the
source is learned as (VLAN, MAC), the destination is looked up in the same
VLAN, and the frame is appended to each output's list, re-tagged only when the
output wants another form (see ovslite.portconfig for the VLAN modes). Which
ports a VLAN reaches from an ingress port, and in which form, is computed once
per (ingress port, VLAN) and cached until the configuration or a port's state
changes: broadcast, multicast and unknown unicast each get their own list, so
the flood flags, isolation, split horizon (a frame from a tunnel port never
leaves by another tunnel port: `Port.split_horizon`) and VLAN membership cost
nothing per frame. The
learning probe is skipped when a frame has the source of the one before it.

Frames the Linux bridge drops in br_handle_frame are dropped, never learned,
and counted by reason: a source that is all zeros ("zero-source") or a group
address ("multicast-source"); the bridge's own address (an internal port's
MAC, `Port.local_mac`) as the source of a frame from any other port
("own-source": the bridge's own MACs are never learned elsewhere, as the
kernel's local fdb entries); a tag of VLAN 4095, which 802.1Q reserves
("reserved-vlan"). These cost one test per new source (its first byte and a
set probe) and one compare per tagged frame. Frames to the reserved group
addresses 01:80:C2:00:00:00-0F (STP, PAUSE, LACP, 802.1X, LLDP) are not
flooded but dropped ("reserved-group") unless `forward_bpdu` is set (OVS's
forward-bpdu); their source is learned, as the Linux bridge does.
"""

from __future__ import annotations

from . import vnet
from .mactable import DEFAULT_AGING, DEFAULT_SIZE, MacTable
from .port import Port, PortStats, TokenBucket
from .vnet import MIN_PACKET_LEN

__all__ = ["Bridge", "Port", "PortStats", "Reach", "TokenBucket", "is_reserved_group", "retag"]

BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)
DEFAULT_VLAN = 0  # untagged frames on a trunk port
#: VID 4095: reserved by 802.1Q, never a VLAN (0 is a priority tag: the port's own VLAN)
RESERVED_VID = 0xFFF
#: 802.1D's reserved group addresses are 01:80:C2:00:00:00 to 01:80:C2:00:00:0F
RESERVED_GROUP_PREFIX = b"\x01\x80\xc2\x00\x00"


def is_reserved_group(mac) -> bool:
    """Whether `mac` is one of 802.1D's reserved group addresses (link-local: STP, LLDP...)."""
    return mac[5] < 0x10 and mac[:5] == RESERVED_GROUP_PREFIX


class Reach:
    """Where frames of one VLAN may go from one ingress port (cached)."""

    __slots__ = ("unicast", "unknown", "multicast", "broadcast")

    def __init__(self, in_port: Port, vlan: int, ports):
        allowed = {}
        for p in ports:
            if p is in_port or not p.up or not p.stp_forwarding or p.mirror_out or \
                    (in_port.isolated and p.isolated):
                continue
            if in_port.split_horizon and p.split_horizon:  # tunnel to tunnel: no loops in a mesh
                continue
            tagged = p.egress_tagged(vlan)
            if tagged is not None:
                allowed[p] = tagged
        self.unicast = allowed
        self.unknown = tuple((p, t) for p, t in allowed.items() if p.flood)
        self.multicast = tuple((p, t) for p, t in allowed.items() if p.mcast_flood)
        self.broadcast = tuple((p, t) for p, t in allowed.items() if p.bcast_flood)


class Bridge:
    def __init__(self, name: str, aging: float = DEFAULT_AGING, table_size: int = DEFAULT_SIZE):
        self.name = name
        self.macs = MacTable(aging, table_size)
        self.ports: dict[str, Port] = {}
        self._reach: dict[Port, dict[int, Reach]] = {}
        self._next_number = 1
        #: bumped whenever ports, their settings or their states change (flow cache)
        self.version = 0
        self._forward_bpdu = False
        #: the bridge's own MACs -> the port each belongs to (see set_local_mac)
        self.local_macs: dict[bytes, Port] = {}
        #: sources that need a closer look (source_drop): all zeros and the bridge's own MACs
        self._source_guard = frozenset((ZERO_MAC,))
        #: the bridge's spanning tree (ovslite.stpport.BridgeStp) if stp or rstp is on
        self.stp = None
        #: MAC ageing as configured, and as a topology change (802.1D) wants it meanwhile
        self.configured_aging = float(aging)
        self.stp_aging: float | None = None
        #: the port mirrors (ovslite.mirror.Mirrors), None without any
        self.mirrors = None

    @property
    def forward_bpdu(self) -> bool:
        """Flood frames to the reserved group addresses instead of dropping them."""
        return self._forward_bpdu

    @forward_bpdu.setter
    def forward_bpdu(self, on: bool) -> None:
        on = bool(on)
        if on != self._forward_bpdu:
            self._forward_bpdu = on
            self.changed()

    # -- configuration ------------------------------------------------------
    def set_aging(self, seconds: float) -> None:
        self.configured_aging = float(seconds)
        fast = self.stp_aging
        self.macs.aging = self.configured_aging if fast is None else min(self.configured_aging, fast)

    def add_port(self, port: Port) -> Port:
        if port.name in self.ports:
            raise ValueError(f"port {port.name} already on bridge {self.name}")
        port.number = self._next_number
        self._next_number += 1
        port.bridge = self
        self.ports[port.name] = port
        self.changed()
        return port

    def remove_port(self, name: str) -> Port:
        port = self.ports.pop(name)
        self.macs.drop_port(port)
        port.bridge = None
        if port.local_mac is not None:
            port.local_mac = None
            self._local_macs_changed()
        self.changed()
        return port

    def set_mirrors(self, mirrors) -> None:
        """New mirrors (ovslite.mirror.Mirrors or None); their output ports leave forwarding."""
        self.mirrors = mirrors
        outputs = mirrors.outputs if mirrors is not None else frozenset()
        for p in self.ports.values():
            if p.mirror_out != (p in outputs):
                p.mirror_out = p in outputs
                if p.mirror_out:
                    self.macs.flush(p)
        self.changed()

    def set_local_mac(self, port: Port, mac: bytes | None) -> None:
        """`port`'s host-side interface has address `mac` (None: none, or not known).

        The bridge's own address: frames with it as source from any other port
        are dropped, and what was learned of it elsewhere is forgotten.
        """
        mac = bytes(mac) if mac is not None else None
        if mac == port.local_mac:
            return
        port.local_mac = mac
        self._local_macs_changed()
        if mac is not None:
            macs = self.macs
            for vlan in list(macs.vlans):
                entry = macs.get(vlan, mac)
                if entry is not None and entry.port is not port and not entry.static:
                    macs.delete(vlan, mac)
        self.changed()

    def _local_macs_changed(self) -> None:
        self.local_macs = {p.local_mac: p for p in self.ports.values() if p.local_mac is not None}
        self._source_guard = frozenset((ZERO_MAC, *self.local_macs))

    def source_drop(self, in_port: Port, src) -> str | None:
        """The drop reason of a frame from `in_port` with source MAC `src`, or None if
        the source is fine. `forward` asks only when `src` is a group address or
        in `_source_guard`."""
        if src[0] & 1:
            return "multicast-source"
        if src == ZERO_MAC:
            return "zero-source"
        owner = self.local_macs.get(src)
        if owner is not None and owner is not in_port:
            return "own-source"
        return None

    def configure_port(self, port: Port, settings: dict) -> None:
        """New switching settings for `port`; what it learned may no longer hold."""
        port.configure(settings)
        self.macs.flush(port)
        self.set_port_state(port, port.link_up, port.link_reason)
        self.changed()

    def set_port_state(self, port: Port, link_up: bool, reason: str = "") -> bool:
        """Record the link state; returns True if the port's effective state changed."""
        port.link_up, port.link_reason = link_up, "" if link_up else reason
        up = link_up and port.admin_up
        reason = "" if up else ("administratively down" if not port.admin_up else reason)
        if port.up == up and port.reason == reason:
            return False
        changed = port.up != up
        port.up, port.reason = up, reason
        if changed:
            if not up:
                self.macs.flush(port)
            self.changed()
        return True

    def changed(self) -> None:
        """Forget cached reach: ports, their settings or their state changed."""
        self._reach = {p: {} for p in self.ports.values()}
        self.version += 1

    def reach(self, in_port: Port, vlan: int) -> Reach:
        by_vlan = self._reach[in_port]
        r = by_vlan.get(vlan)
        if r is None:
            r = by_vlan[vlan] = Reach(in_port, vlan, self.ports.values())
        return r

    def ingress_vlan(self, in_port: Port, pkt) -> tuple[int | None, bool, int]:
        """(VLAN or None to drop, frame has a tag, the tag's VID) for one packet."""
        if pkt[22] == 0x81 and pkt[23] == 0:
            if len(pkt) < MIN_PACKET_LEN + 4:
                return None, True, 0  # a tag cut short: dropped, never read past the end
            vid = (pkt[24] & 0x0F) << 8 | pkt[25]
            if vid == RESERVED_VID:
                return None, True, vid
            if vid:
                ok = in_port.tagged_ok
                return (vid if ok is None or vid in ok else None), True, vid
            return in_port.untagged_vlan, True, 0
        return in_port.untagged_vlan, False, 0

    def unicast_path(self, in_port: Port, pkt, now: float):
        """Where `forward` sends `pkt` when it is known unicast that leaves by one
        port unchanged: (out Port, the VLAN's MAC dict, the source's MacEntry
        (None if `forward` would not learn it), the destination's MacEntry).
        None for any other frame.

        Pure, for the datapath's flow cache (ovslite.flows): call it after
        `forward` took the frame, so its source is learned.
        """
        if not in_port.up or not in_port.stp_forwarding or len(pkt) < MIN_PACKET_LEN + 4 \
                or pkt[10] & 1 or in_port.mirror_out:
            return None
        src_mac = pkt[16:22]
        if (src_mac[0] & 1 or src_mac in self._source_guard) and self.source_drop(in_port, src_mac):
            return None
        vlan, has_tag, vid = self.ingress_vlan(in_port, pkt)
        table = self.macs.vlans.get(vlan) if vlan is not None else None
        if table is None:
            return None
        dst = table.get(pkt[10:16])
        if dst is None or not (dst.static or now - dst.used <= self.macs.aging):
            return None
        tagged = self.reach(in_port, vlan).unicast.get(dst.port)
        if tagged is None or not ((has_tag and vid == vlan) if tagged else not has_tag):
            return None  # filtered, or re-tagged on the way out
        if self.mirrors is not None and self.mirrors.unicast_selected(in_port, vlan, dst.port):
            return None  # mirrored: the copy is made on the slow path
        src = None
        if in_port.learning:
            src = table.get(src_mac)
            if src is None:
                return None  # not learned (no room could be made): learn on
            if src.port is not in_port and not src.static:
                return None
        return dst.port, table, src, dst

    # -- forwarding ---------------------------------------------------------
    def forward(self, in_port: Port, packets: list, now: float) -> dict[Port, list]:
        """Decide where each packet of one received batch goes."""
        outputs: dict[Port, list] = {}
        if not in_port.up:
            in_port.stats.drop("port-down", len(packets))
            return outputs
        if self.stp is not None:  # BPDUs go to the spanning tree, whatever the port's state
            packets = self.stp.take_bpdus(in_port, packets, now)
            if not in_port.stp_forwarding:
                self._not_forwarding(in_port, packets, now)
                return outputs
        macs = self.macs
        vlans = macs.vlans
        aging = macs.aging
        learning = in_port.learning
        storm = in_port.storm
        untagged_vlan = in_port.untagged_vlan
        tagged_ok = in_port.tagged_ok
        source_guard = self._source_guard
        cur_vlan = reach = table = None
        last_src = last_vlan = None
        runts = vlan_drops = reserved_vlan = reserved_group = storm_drops = unreachable = 0
        for pkt in packets:
            if len(pkt) < MIN_PACKET_LEN:
                runts += 1
                continue
            # ingress_vlan(), inlined: this loop runs once per frame
            if pkt[22] == 0x81 and pkt[23] == 0:
                if len(pkt) < MIN_PACKET_LEN + 4:
                    runts += 1
                    continue
                has_tag = True
                vid = (pkt[24] & 0x0F) << 8 | pkt[25]
                if not vid:
                    vlan = untagged_vlan
                elif vid == RESERVED_VID:
                    reserved_vlan += 1
                    continue
                elif tagged_ok is None or vid in tagged_ok:
                    vlan = vid
                else:
                    vlan = None
            else:
                has_tag = False
                vid = 0
                vlan = untagged_vlan
            if vlan is None:
                vlan_drops += 1
                continue
            if vlan != cur_vlan:
                reach = self.reach(in_port, vlan)
                # The VLAN's MAC dict, kept for the batch: learning below adds to it.
                table = vlans.get(vlan)
                if table is None:
                    table = macs.table(vlan)
                cur_vlan = vlan
            src = pkt[16:22]
            if src != last_src or vlan != last_vlan:
                if src[0] & 1 or src in source_guard:
                    reason = self.source_drop(in_port, src)
                    if reason is not None:
                        in_port.stats.drop(reason)
                        continue
                last_src, last_vlan = src, vlan
                if learning:
                    macs.learn(vlan, src, in_port, now)
            dst = pkt[10:16]
            if dst[0] & 1:
                if dst == BROADCAST:
                    targets = reach.broadcast
                elif dst[1] == 0x80 and dst[5] < 0x10 and dst[:5] == RESERVED_GROUP_PREFIX \
                        and not self._forward_bpdu:
                    # is_reserved_group(), inlined; issue #14's STP takes its BPDUs here
                    reserved_group += 1
                    continue
                else:
                    targets = reach.multicast
            else:
                entry = table.get(dst)
                if entry is not None and (entry.static or now - entry.used <= aging):
                    out = entry.port
                    tagged = reach.unicast.get(out)
                    if tagged is None:
                        if out is not in_port:  # behind the ingress port: just filtered
                            unreachable += 1  # down, isolated, or off this VLAN
                        continue
                    if (has_tag and vid == vlan) if tagged else not has_tag:
                        q = pkt
                    else:
                        q = retag(pkt, has_tag, vlan, tagged)
                    batch = outputs.get(out)
                    if batch is None:
                        outputs[out] = [q]
                    else:
                        batch.append(q)
                    continue
                targets = reach.unknown
            # Flooded: broadcast, multicast or unknown unicast, which storm control limits.
            if storm is not None and targets and not storm.take(now):
                storm_drops += 1
                continue
            self.emit(outputs, targets, pkt, vlan, has_tag, vid)
        stats = in_port.stats
        if runts:
            stats.drop("runt", runts)
        if vlan_drops:
            stats.drop("vlan", vlan_drops)
        if reserved_vlan:
            stats.drop("reserved-vlan", reserved_vlan)
        if reserved_group:
            stats.drop("reserved-group", reserved_group)
        if storm_drops:
            stats.drop("storm-control", storm_drops)
        if unreachable:
            stats.drop("unreachable", unreachable)
        return outputs

    def _not_forwarding(self, in_port: Port, packets: list, now: float) -> None:
        """A port the spanning tree blocks: drop, and learn sources if it is learning."""
        if packets:
            in_port.stats.drop("stp-blocked", len(packets))
        if not in_port.stp_learning:
            return
        for pkt in packets:
            if len(pkt) < MIN_PACKET_LEN:
                continue
            vlan = self.ingress_vlan(in_port, pkt)[0]
            src = pkt[16:22]
            if vlan is not None and not (src[0] & 1 or src in self._source_guard):
                self.macs.learn(vlan, src, in_port, now)

    @staticmethod
    def emit(outputs: dict, targets, pkt, vlan: int, has_tag: bool, vid: int) -> None:
        """Append `pkt` to each target's list, in the form that target wants."""
        forms = None
        for out, tagged in targets:
            if tagged:
                q = pkt if has_tag and vid == vlan else None
            else:
                q = None if has_tag else pkt
            if q is None:
                if forms is None:
                    forms = {}
                q = forms.get(tagged)
                if q is None:
                    q = forms[tagged] = retag(pkt, has_tag, vlan, tagged)
            batch = outputs.get(out)
            if batch is None:
                outputs[out] = [q]
            else:
                batch.append(q)


def retag(pkt, has_tag: bool, vlan: int, tagged: bool) -> bytes:
    """`pkt` in the form an egress port wants: tagged with `vlan`, or untagged."""
    if not tagged:
        return vnet.strip_tag(pkt)
    if has_tag:
        return vnet.set_vid(pkt, vlan)
    return vnet.push_tag(pkt, vlan)

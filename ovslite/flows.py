"""The datapath's flow cache: known unicast frames skip the bridges, patch hops included.

Design, after Open vSwitch's datapath flows: the first frames of a
conversation take the slow path (each bridge's `forward`, one patch hop at a
time); then a `Flow` remembers where frames with the same Ethernet header go
from that ingress port, through every patch pair on the way, and later frames
are matched with one dict probe and sent to the final port directly. The key
is the frame's first 16 bytes after the virtio_net_hdr: destination, source,
and the EtherType and two bytes after it (the VLAN tag when there is one).

Only what the slow path would forward unchanged to a single known port is
cached: no flood, no re-tagging, no port with an MTU limit, at most MAX_DEPTH
bridges. The bridge's bad-frame checks (source MAC, VLAN 4095, reserved group
destinations) read only bytes of the key, and `unicast_path` refuses what they
drop, so a dropped frame never gets a flow; a bridge learning a new address of
its own bumps its version, which ends flows from a source that just became it.
Everything else, and any frame while a capture is running anywhere, takes the
slow path, which stays the reference.

A flow is checked once per batch before use, and dropped if any of it went
stale: a bridge's configuration or port states changed (`Bridge.version`), a
MAC entry it relies on moved, was removed or replaced (entries are compared
by identity), or the destination aged out. A hit does what the slow path's
side effects would: it refreshes the source entry on every bridge crossed and
counts the frames on every patch port crossed.

Limits: at most FLOW_LIMIT flows in all (a full cache is emptied, and busy
flows come back on their next frame: ~300 bytes a flow, so at most a few MB);
a frame whose key was cached follows the flow even if bytes beyond the key
would have changed the slow path's decision, which no current bridge feature
does; within one batch, frames that hit go out before the misses are
forwarded and learned from, so a MAC that moves mid-batch is followed from
the next batch on (OVS's datapath flows lag their upcalls the same way).
"""

from __future__ import annotations

from .vnet import MIN_PACKET_LEN, VNET_HDR_LEN

#: key = frame[KEY] (VLAN tag or EtherType and two bytes: both forms decide alike)
KEY_START, KEY_END = VNET_HDR_LEN, VNET_HDR_LEN + 16
#: shorter frames never hit: a tagged frame must hold its whole tag
MIN_HIT_LEN = MIN_PACKET_LEN + 4
FLOW_LIMIT = 8192
#: flows set up per received batch at most (an unknown-unicast storm costs bounded work)
SETUPS_PER_BATCH = 16
#: bridges one frame may cross in one loop pass (patch ports); see Datapath
MAX_DEPTH = 8


class Flow:
    """Where frames with one key go from one ingress port, and what that relies on."""

    __slots__ = ("out", "hops", "bridges", "entries", "dsts", "srcs", "packets", "bytes", "used")

    def __init__(self, out, hops: tuple, bridges: tuple, entries: tuple, dsts: tuple, srcs: tuple,
                 now: float = 0.0):
        self.out = out  # the final Port (not a patch)
        self.hops = hops  # ((patch Port, its peer Port), ...), in crossing order
        self.bridges = bridges  # ((Bridge, its version when the flow was set up), ...)
        self.entries = entries  # ((a VLAN's MAC dict, MacEntry), ...): must still be there
        self.dsts = dsts  # ((MacTable, destination MacEntry), ...): must not have aged
        self.srcs = srcs  # source MacEntry per bridge crossed with learning on
        #: frames and bytes (without virtio_net_hdr) sent by this flow; when it last hit
        self.packets = 0
        self.bytes = 0
        self.used = now

    def valid(self, now: float) -> bool:
        for bridge, version in self.bridges:
            if bridge.version != version:
                return False
        for table, entry in self.entries:
            if table.get(entry.mac) is not entry:
                return False
        for macs, entry in self.dsts:
            if not entry.static and now - entry.used > macs.aging:
                return False
        return True


def set_up(in_port, pkt, now: float) -> Flow | None:
    """The flow `pkt` from `in_port` takes, or None if the slow path must decide.

    Follows `Bridge.unicast_path` from bridge to bridge through patch ports
    (a patch netdev's `peer_port`); call it after the slow path forwarded the
    frame, so what the frame taught the bridges is in their tables.
    """
    hops, bridges, entries, dsts, srcs = [], [], [], [], []
    port = in_port
    for _ in range(MAX_DEPTH):
        bridge = port.bridge
        if bridge is None:
            return None
        path = bridge.unicast_path(port, pkt, now)
        if path is None:
            return None
        out, table, src, dst = path
        if out.max_len is not None:
            return None
        bridges.append((bridge, bridge.version))
        entries.append((table, dst))
        dsts.append((bridge.macs, dst))
        if src is not None:
            entries.append((table, src))
            if src.port is port:  # what learn() refreshes (a static entry elsewhere stays)
                srcs.append(src)
        netdev = out.netdev
        if netdev.deliver_batch is None:  # not a patch port: the frame leaves here
            return Flow(out, tuple(hops), tuple(bridges), tuple(entries), tuple(dsts), tuple(srcs), now)
        peer = getattr(netdev, "peer_port", None)
        if peer is None:
            return None  # a patch port without a live peer: the slow path counts the loss
        hops.append((out, peer))
        port = peer
    return None  # more bridges than a pass may cross: the slow path drops it as a loop


class FlowCache:
    """Flows by ingress port and key; `match` splits a batch into hits and misses."""

    def __init__(self):
        self.by_port: dict = {}
        self._count = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self.by_port.clear()
        self._count = 0

    def forget_port(self, port) -> None:
        self._count -= len(self.by_port.pop(port, ()))

    def match(self, port, packets: list, now: float) -> tuple[dict, list]:
        """({Flow: [packets]} for valid flows, [packets] for the slow path).

        Order is kept within a flow; frames of different flows may be reordered.
        """
        flows = self.by_port.get(port)
        if not flows:
            self.misses += len(packets)
            return {}, packets
        groups: dict[Flow, list] = {}
        misses = []
        get = flows.get
        start, end, min_len = KEY_START, KEY_END, MIN_HIT_LEN
        last = group = None  # a batch is mostly one flow: skip the groups probe then
        for pkt in packets:
            flow = get(pkt[start:end])
            if flow is None or len(pkt) < min_len:
                misses.append(pkt)
            elif flow is last:
                group.append(pkt)
            else:
                group = groups.get(flow)
                if group is None:
                    group = groups[flow] = []
                group.append(pkt)
                last = flow
        for flow in groups:  # mostly one flow, valid: one call, no list
            if not flow.valid(now):
                break
        else:
            self.misses += len(misses)
            self.hits += len(packets) - len(misses)
            return groups, misses
        for flow in [f for f in groups if not f.valid(now)]:
            stale = groups.pop(flow)
            del flows[stale[0][KEY_START:KEY_END]]
            self._count -= 1
            misses.extend(stale)
        self.misses += len(misses)
        self.hits += len(packets) - len(misses)
        return groups, misses

    def learn(self, port, packets: list, now: float) -> None:
        """Set up flows for frames the slow path just forwarded (a few per batch)."""
        tried = set()
        for pkt in packets:
            if pkt[KEY_START] & 1 or len(pkt) < MIN_HIT_LEN:
                continue  # floods are never cached; runts are the slow path's
            key = pkt[KEY_START:KEY_END]
            if key in tried:
                continue
            tried.add(key)
            flow = set_up(port, pkt, now)
            if flow is not None:
                if self._count >= FLOW_LIMIT:
                    self.clear()
                flows = self.by_port.get(port)
                if flows is None:
                    flows = self.by_port[port] = {}
                if key not in flows:
                    self._count += 1
                flows[key] = flow
            if len(tried) >= SETUPS_PER_BATCH:
                return

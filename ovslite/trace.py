"""Trace: what the switch would do with one frame, decision by decision, sending nothing.

`ovslite-ctl trace BR in_port=P dl_src=MAC dl_dst=MAC [dl_vlan=N] [dl_type=T]`
(after Open vSwitch's ofproto/trace). A frame is built from the fields and
walked through the same decisions the datapath takes: ingress port state,
ingress VLAN, learning, the MAC table lookup or the flood list, storm control,
egress VLAN form and MTU per output port, and for a patch port the peer's
bridge, recursively, up to the datapath's MAX_DEPTH bridges.

Trace cannot disagree with forwarding because it asks the forwarding core
rather than re-implementing it: Bridge.ingress_vlan for the ingress VLAN,
Bridge.reach for who may receive (unicast, unknown, multicast and broadcast
lists, i.e. port state, isolation, VLAN membership and the flood flags),
Bridge.emit for the exact bytes each output gets, the MAC table's entries
for the lookup. What trace adds is only the explanation: why a port is not in
a flood list, which entry was hit, how old it is.

Nothing is changed: no entry is learned, no counter moves, no storm-control
token is taken (Bridge.reach may fill its cache, which is not state anyone can
observe). What learning and storm control *would* do inside this one trace is
kept in a private overlay, so a frame that comes back to a bridge through a
patch loop meets the table and the token bucket as the datapath would leave
them. `--generate` then injects the frame for real (Datapath.input on the
ingress port: learned, counted, sent) and reports where it actually left.

Limits: the clock is read once per trace (the datapath reads it once per
bridge crossed); evictions when a full table learns are predicted for the
first one per table, a second one in the same trace is approximate; a trace
stops after MAX_STEPS steps (a frame flooded into several patch loops fans
out exponentially, in the datapath too).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import vnet
from .bridge import BROADCAST, RESERVED_VID, Bridge, Port, is_reserved_group
from .datapath import MAX_DEPTH
from .vnet import MIN_PACKET_LEN, format_mac, parse_mac

FIELDS = ("in_port", "dl_src", "dl_dst", "dl_vlan", "dl_type")
REQUIRED = ("in_port", "dl_src", "dl_dst")
DEFAULT_DL_TYPE = 0x0800
#: frame length before padding stops (Ethernet minimum without the FCS)
MIN_FRAME = 60
#: a trace stops (and says so) after this many steps
MAX_STEPS = 1000
#: Bridge.source_drop's reasons, said in words
SOURCE_DROPS = {"multicast-source": "a group address", "zero-source": "all zeros",
                "own-source": "the bridge's own address"}
#: what uses the reserved group addresses (802.1D table 7-10; others are reserved)
LINK_LOCAL = {0x00: "STP", 0x01: "PAUSE", 0x02: "LACP, slow protocols", 0x03: "802.1X",
              0x0E: "LLDP"}

# Step kinds, in the order one bridge visit produces them.
KINDS = ("flow", "bridge", "ingress", "vlan", "learn", "lookup", "storm", "flood",
         "egress", "mtu", "output", "patch", "drop", "note", "inject")


# -- the flow -----------------------------------------------------------------


@dataclass
class Flow:
    in_port: str
    dl_src: bytes
    dl_dst: bytes
    dl_vlan: int | None = None  # None: untagged; 0: priority-tagged
    dl_type: int = DEFAULT_DL_TYPE

    def __str__(self) -> str:
        vlan = f",dl_vlan={self.dl_vlan}" if self.dl_vlan is not None else ""
        return (f"in_port={self.in_port},dl_src={format_mac(self.dl_src)},"
                f"dl_dst={format_mac(self.dl_dst)}{vlan},dl_type={self.dl_type:#06x}")


def link_local_name(mac: bytes) -> str:
    return LINK_LOCAL.get(mac[5], "reserved")


def parse_vlan(text) -> int:
    """A VID for a tag: 0-4095 (4095 is reserved, so a trace can show it dropped)."""
    try:
        vid = int(str(text), 0)
    except ValueError:
        raise ValueError(f"dl_vlan: {text!r} is not a VLAN number") from None
    if not 0 <= vid <= RESERVED_VID:
        raise ValueError(f"dl_vlan: VLAN {vid} is out of range (0-{RESERVED_VID})")
    return vid


def parse_dl_type(text) -> int:
    try:
        value = int(str(text), 0)
    except ValueError:
        raise ValueError(f"dl_type: {text!r} is not a number (e.g. 0x0800)") from None
    return check_dl_type(value)


def check_dl_type(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"dl_type: {value:#x} is out of range (0-0xffff)")
    if value == vnet.TPID_8021Q:
        raise ValueError("dl_type: 0x8100 is the VLAN tag itself; use dl_vlan=N")
    return value


def parse_flow(args: Iterable[str]) -> Flow:
    """key=value words (each may hold several, comma-separated) -> Flow; ValueError if bad."""
    values: dict[str, str] = {}
    for arg in args:
        for item in arg.replace(",", " ").split():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"invalid field {item!r}: expected key=value")
            if key not in FIELDS:
                raise ValueError(f"unknown field {key!r} (known: {', '.join(FIELDS)})")
            if key in values:
                raise ValueError(f"field {key} given more than once")
            values[key] = value
    for key in REQUIRED:
        if key not in values:
            raise ValueError(f"missing field {key}= (needed: {', '.join(REQUIRED)})")
    if not values["in_port"]:
        raise ValueError("in_port: empty port name")
    macs = {}
    for key in ("dl_src", "dl_dst"):
        try:
            macs[key] = parse_mac(values[key])
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    src, dst = macs["dl_src"], macs["dl_dst"]
    vlan = parse_vlan(values["dl_vlan"]) if "dl_vlan" in values else None
    dl_type = parse_dl_type(values["dl_type"]) if "dl_type" in values else DEFAULT_DL_TYPE
    return Flow(values["in_port"], src, dst, vlan, dl_type)


def build_packet(flow: Flow, length: int = MIN_FRAME) -> bytes:
    """Ethernet header (+ an 802.1Q tag if dl_vlan) + dl_type, zero-padded, with a vnet header."""
    frame = flow.dl_dst + flow.dl_src
    if flow.dl_vlan is not None:
        frame += vnet.TPID_8021Q.to_bytes(2, "big") + flow.dl_vlan.to_bytes(2, "big")
    frame += flow.dl_type.to_bytes(2, "big")
    return vnet.ethernet(frame.ljust(length, b"\0"))


# -- the result ---------------------------------------------------------------


@dataclass
class Step:
    kind: str
    bridge: str
    port: str | None
    detail: str
    depth: int = 0  # bridges crossed (patch ports) before this one

    def as_dict(self) -> dict:
        return {"kind": self.kind, "bridge": self.bridge, "port": self.port,
                "depth": self.depth, "detail": self.detail}


@dataclass
class Output:
    bridge: str
    port: str
    vlan: int  # the VLAN inside the bridge
    tagged: bool  # the frame leaves with a tag (of `vlan`)

    def as_dict(self) -> dict:
        return {"bridge": self.bridge, "port": self.port, "vlan": self.vlan, "tagged": self.tagged}


@dataclass
class Trace:
    bridge: str
    in_port: str
    flow: str
    steps: list[Step] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    @property
    def drops(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "drop"]

    @property
    def drop_reason(self) -> str | None:
        """Why nothing leaves (None if something does)."""
        if self.outputs:
            return None
        return drop_reason([s.as_dict() for s in self.drops], self.bridge)

    @property
    def injected(self) -> bool:
        return any(s.kind == "inject" for s in self.steps)

    def as_dict(self) -> dict:
        """The JSON form; `from_messages` rebuilds exactly this from the protocol."""
        return result_dict(self.bridge, self.in_port, self.flow,
                           [s.as_dict() for s in self.steps], [o.as_dict() for o in self.outputs])


def result_dict(bridge: str, in_port: str, flow: str, steps: list[dict], outputs: list[dict]) -> dict:
    drops = [{"bridge": s["bridge"], "port": s["port"], "detail": s["detail"]}
             for s in steps if s["kind"] == "drop"]
    reason = None if outputs else drop_reason(drops, bridge)
    return {"bridge": bridge, "in_port": in_port, "flow": flow, "steps": steps,
            "outputs": outputs, "drops": drops, "drop_reason": reason,
            "injected": any(s["kind"] == "inject" for s in steps),
            "result": summary(outputs, reason, bridge)}


def drop_reason(drops: list[dict], bridge: str) -> str:
    if not drops:
        return "no output"
    return "; ".join(d["detail"] if d["bridge"] == bridge else f"{d['bridge']}: {d['detail']}"
                     for d in drops)


def output_name(out: dict, bridge: str) -> str:
    return out["port"] if out["bridge"] == bridge else f"{out['bridge']}:{out['port']}"


def output_form(out: dict) -> str:
    if out["tagged"]:
        return f"VLAN {out['vlan']} tagged"
    return f"VLAN {out['vlan']} untagged" if out["vlan"] else "untagged"


def summary(outputs: list[dict], reason: str | None, bridge: str) -> str:
    """'output: p2, p3 (VLAN 10 untagged), br2:p9 (VLAN 10 tagged)' or 'drop: REASON'.

    Consecutive outputs in the same form share one annotation.
    """
    if not outputs:
        return f"drop: {reason or 'no output'}"
    parts: list[str] = []
    group: list[str] = []
    for i, out in enumerate(outputs):
        group.append(output_name(out, bridge))
        form = output_form(out)
        if i + 1 == len(outputs) or output_form(outputs[i + 1]) != form:
            parts.append(f"{', '.join(group)} ({form})")
            group = []
    return "output: " + ", ".join(parts)


# -- descriptions -------------------------------------------------------------


def vlan_ranges(vlans) -> str:
    """[10, 20, 21, 22] -> '10,20-22' (set-port's trunks syntax)."""
    out: list[str] = []
    vids = sorted(vlans)
    i = 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return ",".join(out)


def vlan_role(port: Port) -> str:
    """'access port, tag 10', 'trunk port, trunks 10,20-30', 'native-untagged port, native VLAN 5, all VLANs'."""
    trunks = "all VLANs" if port.trunks is None else f"trunks {vlan_ranges(port.trunks)}"
    if port.mode == "access":
        return f"access port, tag {port.tag}"
    if port.mode == "trunk":
        return f"trunk port, {trunks}"
    return f"{port.mode} port, native VLAN {port.tag}, {trunks}"


def _state(port: Port) -> str:
    return "up" if port.up else f"down ({port.reason or 'down'})"


def _flag_names(kind: str) -> str:
    return {"broadcast": "bcast-flood", "multicast": "mcast-flood", "unknown": "flood"}[kind]


def not_reached(in_port: Port, p: Port, vlan: int, kind: str | None = None) -> str:
    """Why `p` is not in in_port's reach for `vlan` (kind: the flood list's flag, if any)."""
    if p is in_port:
        return "the ingress port"
    if not p.up:
        return _state(p)
    if in_port.isolated and p.isolated:
        return f"isolated, as is {in_port.name}"
    if in_port.split_horizon and p.split_horizon:
        return f"split horizon: a tunnel, as is {in_port.name}"
    if p.egress_tagged(vlan) is None:
        return f"VLAN {vlan} not carried: {vlan_role(p)}"
    if kind is not None:
        flag = _flag_names(kind)
        if not getattr(p, flag.replace("-", "_")):
            return f"{flag} off"
    return "excluded"


def egress_form(vlan: int, has_tag: bool, vid: int, tagged: bool) -> str:
    if tagged:
        if not has_tag:
            return f"VLAN {vlan} tagged, tag pushed"
        if vid != vlan:
            return f"VLAN {vlan} tagged, VID rewritten {vid} -> {vlan}"
        return f"VLAN {vlan} tagged, tag kept"
    what = f"VLAN {vlan} untagged" if vlan else "untagged"
    return f"{what}, tag stripped" if has_tag else what


# -- the walk -----------------------------------------------------------------


class _Truncated(Exception):
    pass


@dataclass
class _Entry:
    """A MAC table entry as the trace sees it (the real one or one it would learn)."""

    port: Port
    used: float
    static: bool


class Tracer:
    """Walks one frame through bridges, recording steps; changes nothing.

    `ports` (every port by name, as Switch.ports) is needed to follow patch
    ports to their peers; without it a patch output is reported, not followed.
    """

    def __init__(self, now: float, ports: Mapping[str, Port] | None = None,
                 max_depth: int = MAX_DEPTH, max_steps: int = MAX_STEPS):
        self.now = now
        self.ports = ports if ports is not None else {}
        self.max_depth = max_depth
        self.max_steps = max_steps
        self.trace: Trace | None = None
        # What this trace would have changed, without changing it.
        self._macs: dict[tuple[Bridge, int, bytes], _Entry | None] = {}
        self._macs_added: dict[Bridge, int] = {}
        self._tokens: dict[Port, int] = {}

    def run(self, in_port: Port, packet: bytes, flow: Flow | str = "") -> Trace:
        br = in_port.bridge
        if br is None:
            raise ValueError(f"port {in_port.name} is on no bridge")
        self.trace = t = Trace(br.name, in_port.name, str(flow))
        frame_len = len(packet) - vnet.VNET_HDR_LEN
        self._step("flow", br, in_port, f"{flow} ({frame_len}-byte frame)" if flow
                   else f"{frame_len}-byte frame", 0)
        try:
            self._enter(in_port, packet, 0)
        except _Truncated:
            t.steps.append(Step("note", br.name, None,
                                f"trace stopped after {self.max_steps} steps", 0))
        return t

    def _step(self, kind: str, br: Bridge, port: Port | None, detail: str, depth: int) -> None:
        steps = self.trace.steps
        if len(steps) >= self.max_steps:
            raise _Truncated
        steps.append(Step(kind, br.name, port.name if port is not None else None, detail, depth))

    def _drop(self, br: Bridge, port: Port | None, detail: str, depth: int) -> None:
        self._step("drop", br, port, detail, depth)

    # -- one bridge -------------------------------------------------------------
    def _enter(self, port: Port, pkt, depth: int) -> None:
        """Datapath.input + Bridge.forward for one frame arriving on `port`."""
        br = port.bridge
        self._step("bridge", br, port, f"bridge {br.name}, frame received on {port.name}", depth)
        if depth >= self.max_depth:
            self._drop(br, port, f"loop: the frame has crossed {depth} bridges "
                       f"(the datapath's limit is {self.max_depth})", depth)
            return
        self._step("ingress", br, port,
                   f"{port.name} (port {port.number}, type {port.type}): {_state(port)}", depth)
        if not port.up:
            self._drop(br, port, f"ingress port {port.name} is {_state(port)}", depth)
            return
        if len(pkt) < MIN_PACKET_LEN:
            self._drop(br, port, "runt: shorter than an Ethernet header", depth)
            return
        vlan, has_tag, vid = br.ingress_vlan(port, pkt)
        if vlan is None:
            role = vlan_role(port)
            if vid == RESERVED_VID:
                self._step("vlan", br, port, f"tagged frame, VID {vid}: reserved by 802.1Q, "
                           "never a VLAN", depth)
                why = f"VLAN {vid} is reserved (counted as reserved-vlan)"
            elif has_tag and vid:
                self._step("vlan", br, port, f"tagged frame, VID {vid}: not accepted ({role})",
                           depth)
                why = f"VLAN {vid} not carried by port {port.name} ({role})"
            else:
                what = "priority-tagged (VID 0)" if has_tag else "untagged"
                self._step("vlan", br, port, f"{what} frame: not accepted ({role}, without "
                           "VLAN 0)", depth)
                why = f"{what} frames not accepted by port {port.name} ({role}, without VLAN 0)"
            self._drop(br, port, why, depth)
            return
        self._step("vlan", br, port, self._ingress_vlan_text(port, vlan, has_tag, vid), depth)
        reach = br.reach(port, vlan)
        src, dst = bytes(pkt[vnet.ETH_SRC]), bytes(pkt[vnet.ETH_DST])
        bad_source = br.source_drop(port, src)
        if bad_source is not None:
            why = SOURCE_DROPS[bad_source]
            if bad_source == "own-source":
                why += f" (of port {br.local_macs[src].name})"
            self._step("learn", br, port, f"{format_mac(src)} is {why}: never learned", depth)
            self._drop(br, port, f"source {format_mac(src)} is {why} "
                       f"(counted as {bad_source})", depth)
            return
        self._learn(br, port, vlan, src, depth)

        # The lookup, as Bridge.forward does it (after learning).
        if is_reserved_group(dst):
            what = f"{format_mac(dst)} is a reserved group address ({link_local_name(dst)})"
            if not br.forward_bpdu:
                self._step("lookup", br, port, f"{what}: not forwarded (forward-bpdu off)", depth)
                self._drop(br, port, f"{what}, not forwarded without forward-bpdu "
                           "(counted as reserved-group)", depth)
                return
            self._step("lookup", br, port, f"{what}: flood as multicast (forward-bpdu on)", depth)
            kind, targets = "multicast", reach.multicast
        elif dst[0] & 1:
            kind = "broadcast" if dst == BROADCAST else "multicast"
            targets = reach.broadcast if kind == "broadcast" else reach.multicast
            self._step("lookup", br, port, f"{format_mac(dst)} is a {kind} address: flood", depth)
        else:
            entry = self._entry(br, vlan, dst)
            aging = br.macs.aging
            where = f"{format_mac(dst)} in VLAN {vlan}"
            if entry is not None and (entry.static or self.now - entry.used <= aging):
                out = entry.port
                how = "static entry" if entry.static else \
                    f"learned, age {max(0, int(self.now - entry.used))} s"
                tagged = reach.unicast.get(out)
                if tagged is None:
                    why = not_reached(port, out, vlan)
                    self._step("lookup", br, port, f"{where}: hit, on {out.name} ({how})", depth)
                    if out is port:
                        self._drop(br, port, f"destination {format_mac(dst)} is behind the "
                                   f"ingress port {port.name}", depth)
                    else:
                        self._drop(br, out, f"destination {format_mac(dst)} is on {out.name}, "
                                   f"which is unreachable: {why}", depth)
                    return
                self._step("lookup", br, port, f"{where}: hit, on {out.name} ({how}): "
                           f"output to {out.name}", depth)
                self._emit(br, port, pkt, ((out, tagged),), vlan, has_tag, vid, depth)
                return
            if entry is None:
                self._step("lookup", br, port, f"{where}: miss: flood as unknown unicast", depth)
            else:
                age = int(self.now - entry.used)
                self._step("lookup", br, port, f"{where}: entry on {entry.port.name} aged out "
                           f"(age {age} s > mac-aging-time {aging:g} s): flood as unknown "
                           f"unicast", depth)
            kind, targets = "unknown", reach.unknown

        # Flooded frames: storm control first (it runs even if nobody would receive).
        storm = port.storm
        if storm is not None:
            tokens = self._storm_tokens(port)
            ok = tokens >= 1.0
            self._step("storm", br, port,
                       f"storm control on {port.name} ({storm.rate:g} flooded frames/s) applies: "
                       f"{tokens:.1f} tokens, would {'pass' if ok else 'drop'} "
                       "(the trace takes none)", depth)
            if not ok:
                self._drop(br, port, f"storm control on {port.name}: more than {storm.rate:g} "
                           "flooded frames/s", depth)
                return
            self._tokens[port] = self._tokens.get(port, 0) + 1
        reached = {p for p, _ in targets}
        excluded = [f"{p.name} ({not_reached(port, p, vlan, kind)})"
                    for p in br.ports.values() if p is not port and p not in reached]
        names = ", ".join(p.name for p, _ in targets) or "nobody"
        detail = f"{'unknown unicast' if kind == 'unknown' else kind} in VLAN {vlan}: to {names}"
        if excluded:
            detail += f"; not to {', '.join(excluded)}"
        self._step("flood", br, port, detail, depth)
        if not targets:
            self._drop(br, port, f"no port to flood to in VLAN {vlan}", depth)
            return
        self._emit(br, port, pkt, targets, vlan, has_tag, vid, depth)

    def _ingress_vlan_text(self, port: Port, vlan: int, has_tag: bool, vid: int) -> str:
        role = vlan_role(port)
        if has_tag and vid:
            return f"tagged frame, VID {vid}: enters VLAN {vlan} ({role})"
        what = "priority-tagged frame (VID 0)" if has_tag else "untagged frame"
        if vlan == 0:
            return f"{what}: VLAN 0, untagged traffic ({role})"
        return f"{what} enters VLAN {vlan} ({role})"

    def _emit(self, br: Bridge, in_port: Port, pkt, targets, vlan: int, has_tag: bool,
              vid: int, depth: int) -> None:
        outputs: dict[Port, list] = {}
        Bridge.emit(outputs, targets, pkt, vlan, has_tag, vid)  # the exact bytes each gets
        forms = dict(targets)
        for out, (q,) in outputs.items():
            self._output(br, out, q, vlan, forms[out], has_tag, vid, depth)

    # -- one output (Datapath.output) -------------------------------------------
    def _output(self, br: Bridge, out: Port, q, vlan: int, tagged: bool, has_tag: bool,
                vid: int, depth: int) -> None:
        self._step("egress", br, out, f"{out.name}: {egress_form(vlan, has_tag, vid, tagged)} "
                   f"({vlan_role(out)})", depth)
        max_len = out.max_len
        if max_len is not None:
            size = len(q) - vnet.VNET_HDR_LEN
            limit = max_len - vnet.VNET_HDR_LEN
            mtu = out.settings.get("mtu")
            if mtu is None and getattr(out.netdev, "inner_mtu", None) is not None:
                mtu = f"{out.netdev.inner_mtu} inside the tunnel"  # a tunnel's limit
            if size <= limit or vnet.is_gso(q):
                self._step("mtu", br, out, f"{size}-byte frame fits {out.name}'s limit of "
                           f"{limit} bytes (mtu {mtu})", depth)
            else:
                self._step("mtu", br, out, f"{size}-byte frame exceeds {out.name}'s limit of "
                           f"{limit} bytes (mtu {mtu})", depth)
                self._drop(br, out, f"{size}-byte frame too long for {out.name} (mtu {mtu})", depth)
                return
        if getattr(out.netdev, "deliver_batch", None) is None:
            describe = getattr(out.netdev, "describe_output", None)  # a tunnel: its outer header
            self._step("output", br, out, f"{out.name}: {describe(q)}" if describe else out.name,
                       depth)
            self.trace.outputs.append(Output(br.name, out.name, vlan, tagged))
            return
        # A port that delivers inside the daemon (patch): follow it into the peer's bridge.
        peer_name = getattr(out.netdev, "peer", None)
        peer = self.ports.get(peer_name) if peer_name else None
        status = out.netdev.status()
        if not status.up or peer is None or peer.bridge is None:
            why = status.reason or (f"peer {peer_name} unknown to the trace" if peer_name
                                    else "no peer")
            self._step("patch", br, out, f"{out.name} delivers nowhere: {why}", depth)
            self._drop(br, out, f"{out.name} cannot deliver ({why}): counted as tx-failed", depth)
            return
        self._step("patch", br, out, f"{out.name} is patched to {peer.name} on bridge "
                   f"{peer.bridge.name}: continue there", depth)
        self._enter(peer, q, depth + 1)

    # -- state, read but not written ----------------------------------------------
    def _entry(self, br: Bridge, vlan: int, mac: bytes) -> _Entry | None:
        key = (br, vlan, mac)
        if key in self._macs:
            return self._macs[key]
        e = br.macs.get(vlan, mac)
        return None if e is None else _Entry(e.port, e.used, e.static)

    def _learn(self, br: Bridge, port: Port, vlan: int, src: bytes, depth: int) -> None:
        """What MacTable.learn would do, said and remembered but not done."""
        mac = format_mac(src)
        if not port.learning:
            self._step("learn", br, port, f"learning off on {port.name}: {mac} not learned", depth)
            return
        entry = self._entry(br, vlan, src)
        now = self.now
        if entry is None:
            macs = br.macs
            detail = f"would learn {mac} on {port.name} in VLAN {vlan}"
            if len(macs) + self._macs_added.get(br, 0) >= macs.max_entries:
                v = macs.victim()
                if v is None:
                    self._step("learn", br, port, f"table full ({macs.max_entries} entries, all "
                               f"static): {mac} would not be learned", depth)
                    return
                detail += (f", evicting {format_mac(v.mac)} (VLAN {v.vlan}) from "
                           f"{getattr(v.port, 'name', v.port)}: the table is full "
                           f"({macs.max_entries} entries)")
                self._macs[(br, v.vlan, v.mac)] = None
                self._macs_added[br] = self._macs_added.get(br, 0) - 1
            self._macs[(br, vlan, src)] = _Entry(port, now, False)
            self._macs_added[br] = self._macs_added.get(br, 0) + 1
            self._step("learn", br, port, detail, depth)
        elif entry.port is port:
            what = "static entry" if entry.static else \
                f"already learned (age {max(0, int(now - entry.used))} s)"
            self._step("learn", br, port, f"{mac} in VLAN {vlan}: {what} on {port.name}: "
                       "would refresh it", depth)
            self._macs[(br, vlan, src)] = _Entry(port, now, entry.static)
        elif entry.static:
            self._step("learn", br, port, f"{mac} in VLAN {vlan}: static entry on "
                       f"{entry.port.name}: not moved", depth)
        else:
            self._step("learn", br, port, f"{mac} in VLAN {vlan}: would move from "
                       f"{entry.port.name} to {port.name}", depth)
            self._macs[(br, vlan, src)] = _Entry(port, now, False)

    def _storm_tokens(self, port: Port) -> float:
        """The tokens TokenBucket.take would see now, minus those this trace already took."""
        b = port.storm
        tokens = b.tokens
        if b.last is not None:
            tokens = min(b.rate, tokens + (self.now - b.last) * b.rate)
        return tokens - self._tokens.get(port, 0)


def trace_packet(in_port: Port, packet: bytes, now: float, ports: Mapping[str, Port] | None = None,
                 flow: Flow | str = "", max_depth: int = MAX_DEPTH) -> Trace:
    """The trace of `packet` received on `in_port` at `now`; changes nothing."""
    return Tracer(now, ports, max_depth).run(in_port, packet, flow)


# -- --generate ---------------------------------------------------------------


def inject(datapath, ports: Mapping[str, Port], in_port: Port, packet: bytes) -> list[dict]:
    """Datapath.input(in_port, [packet], 0) for real; returns where frames left the switch.

    Every port gets a tap for the duration of the call (removed afterwards), so
    what is returned is what the datapath handed to each non-patch netdev, in order.
    """
    seen: list[dict] = []
    taps = datapath.taps
    added = []
    for p in ports.values():
        if getattr(p.netdev, "deliver_batch", None) is not None:
            continue

        def tap(direction, packets, p=p):
            if direction == "out" and p.bridge is not None:
                for q in packets:
                    has_tag = q[22] == 0x81 and q[23] == 0
                    vid = (q[24] & 0x0F) << 8 | q[25] if has_tag else 0
                    seen.append({"bridge": p.bridge.name, "port": p.name, "vid": vid,
                                 "tagged": has_tag})

        taps.setdefault(p, []).append(tap)
        added.append((p, tap))
    try:
        datapath.input(in_port, [packet], 0)
    finally:
        for p, tap in added:
            lst = taps.get(p)
            if lst is not None and tap in lst:
                lst.remove(tap)
                if not lst:
                    del taps[p]
    return seen


def _matches(trace: Trace, seen: list[dict]) -> bool:
    want = [(o.bridge, o.port, o.tagged, o.vlan if o.tagged else 0) for o in trace.outputs]
    got = [(s["bridge"], s["port"], s["tagged"], s["vid"]) for s in seen]
    return want == got


def inject_step(trace: Trace, in_port: Port, seen: list[dict]) -> Step:
    br = in_port.bridge.name
    if seen:
        where = ", ".join(output_name(s, br) for s in seen)
        detail = f"injected on {in_port.name}; left the switch on {where}"
    else:
        detail = f"injected on {in_port.name}; left the switch nowhere"
    detail += " (as traced)" if _matches(trace, seen) else " (DIFFERS from the trace above)"
    return Step("inject", br, in_port.name, detail, 0)


# -- the switch and the control protocol ----------------------------------------


def trace_switch(switch, bridge: str, flow: Flow, generate: bool = False) -> Trace:
    """Trace `flow` on `switch` (SwitchError for an unknown bridge or port); inject if asked."""
    from .switch import SwitchError

    br = switch.bridge(bridge)
    port = br.ports.get(flow.in_port)
    if port is None:
        raise SwitchError(errno.ENOENT, f"no port named {flow.in_port} on bridge {bridge}")
    packet = build_packet(flow)
    datapath = switch.datapath
    result = trace_packet(port, packet, datapath.clock(), switch.ports, flow)
    if generate:
        seen = inject(datapath, switch.ports, port, packet)
        result.steps.append(inject_step(result, port, seen))
    return result


def flow_from_request(values: dict) -> tuple[str, Flow, bool]:
    """The TRACE request's attributes -> (bridge, flow, generate); SwitchError if invalid."""
    from .switch import SwitchError

    try:
        src, dst = parse_mac(values["dl_src"]), parse_mac(values["dl_dst"])
        vlan = values.get("vlan")
        if vlan is not None and not 0 <= vlan <= RESERVED_VID:
            raise ValueError(f"dl_vlan: VLAN {vlan} is out of range (0-{RESERVED_VID})")
        dl_type = check_dl_type(values.get("dl_type", DEFAULT_DL_TYPE))
    except ValueError as exc:
        raise SwitchError(errno.EINVAL, str(exc)) from None
    flow = Flow(values["port"], src, dst, vlan, dl_type)
    return values["bridge"], flow, bool(values.get("generate"))


def to_messages(trace: Trace) -> list[dict]:
    """TRACE reply: one message per step, then a 'final' one with the outputs."""
    msgs = [{"trace_kind": s.kind, "bridge": s.bridge, "port": s.port,
             "trace_depth": s.depth, "trace_detail": s.detail} for s in trace.steps]
    msgs.append({"trace_kind": "final", "bridge": trace.bridge, "port": trace.in_port,
                 "trace_detail": trace.flow, "reason": trace.drop_reason,
                 "trace_outputs": [{"bridge": o.bridge, "port": o.port, "vlan": o.vlan,
                                    "trace_tagged": o.tagged} for o in trace.outputs]})
    return msgs


def from_messages(msgs: list[dict]) -> dict:
    """The client side of to_messages: the same dict as Trace.as_dict()."""
    steps = [{"kind": v.get("trace_kind", ""), "bridge": v.get("bridge", ""),
              "port": v.get("port"), "depth": v.get("trace_depth", 0),
              "detail": v.get("trace_detail", "")}
             for v in msgs if v.get("trace_kind") != "final"]
    final = next((v for v in msgs if v.get("trace_kind") == "final"), {})
    outputs = [{"bridge": o.get("bridge", ""), "port": o.get("port", ""), "vlan": o.get("vlan", 0),
                "tagged": bool(o.get("trace_tagged"))} for o in final.get("trace_outputs", [])]
    return result_dict(final.get("bridge", ""), final.get("port", ""),
                       final.get("trace_detail", ""), steps, outputs)


def handle_request(switch, values: dict) -> list[dict]:
    """The control server's TRACE handler: the reply messages of the dump."""
    bridge, flow, generate = flow_from_request(values)
    return to_messages(trace_switch(switch, bridge, flow, generate))

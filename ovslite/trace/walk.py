"""Trace's walk: one frame through the bridges, decision by decision, changing nothing.

Tracer asks the forwarding core (Bridge.ingress_vlan, Bridge.reach,
Bridge.emit, the MAC table) what it would do and records each decision as a
Step; a patch output is followed into the peer's bridge, recursively, up to
MAX_DEPTH bridges. What learning and storm control would change is kept in a
private overlay, so a frame that loops back meets the state the datapath
would leave. A tunnel output is described by its netdev's describe_output.

Limits: the clock is read once per trace; only the first eviction per table
is predicted exactly; the walk stops after MAX_STEPS steps. Mirror copies
(ovslite.mirror) follow the frame's own outputs, as in the datapath: a
"mirror" step each, then the copy's output (into a patch peer's bridge too),
so they are outputs of the trace like any frame that leaves the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import mirror, vnet
from ..bridge import BROADCAST, RESERVED_VID, Bridge, Port, is_reserved_group
from ..datapath import MAX_DEPTH
from ..stpport import STP_MAC
from ..vnet import MIN_PACKET_LEN, format_mac
from .explain import SOURCE_DROPS, _state, egress_form, link_local_name, not_reached, vlan_role
from .flow import Flow
from .result import Output, Step, Trace

#: a trace stops (and says so) after this many steps
MAX_STEPS = 1000


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
        if br.stp is not None and bytes(pkt[vnet.ETH_DST]) == STP_MAC:
            self._drop(br, port, f"a BPDU: taken by the bridge's spanning tree ({br.stp.mode}), "
                       "never forwarded", depth)
            return
        if not port.stp_forwarding:
            learns = "learns sources, " if port.stp_learning else ""
            self._drop(br, port, f"ingress port {port.name} is blocked by spanning tree "
                       f"({port.stp_block or 'not forwarding'}): {learns}forwards nothing "
                       "(counted as stp-blocked)", depth)
            return
        if len(pkt) < MIN_PACKET_LEN:
            self._drop(br, port, "runt: shorter than an Ethernet header", depth)
            return
        if port.mirror_out:
            self._drop(br, port, f"{port.name} is a mirror's output port: what it receives is "
                       f"dropped (counted as {mirror.OUTPUT_DROP})", depth)
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
        outs = self._switch(br, port, pkt, vlan, has_tag, vid, depth)
        if br.mirrors is not None:
            self._mirror(br, port, pkt, vlan, has_tag, vid, outs, depth)

    def _switch(self, br: Bridge, port: Port, pkt, vlan: int, has_tag: bool, vid: int,
                depth: int) -> tuple:
        """Bridge.forward's decisions for a frame accepted in `vlan`: the ports it leaves by."""
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
            return ()
        self._learn(br, port, vlan, src, depth)

        # The lookup, as Bridge.forward does it (after learning).
        if is_reserved_group(dst):
            what = f"{format_mac(dst)} is a reserved group address ({link_local_name(dst)})"
            if not br.forward_bpdu:
                self._step("lookup", br, port, f"{what}: not forwarded (forward-bpdu off)", depth)
                self._drop(br, port, f"{what}, not forwarded without forward-bpdu "
                           "(counted as reserved-group)", depth)
                return ()
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
                    return ()
                self._step("lookup", br, port, f"{where}: hit, on {out.name} ({how}): "
                           f"output to {out.name}", depth)
                return self._emit(br, port, pkt, ((out, tagged),), vlan, has_tag, vid, depth)
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
                return ()
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
            return ()
        return self._emit(br, port, pkt, targets, vlan, has_tag, vid, depth)

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
        return tuple(outputs)

    def _mirror(self, br: Bridge, in_port: Port, pkt, vlan: int, has_tag: bool, vid: int,
                outs: tuple, depth: int) -> None:
        """The copies br's mirrors make of the frame (mirror.Mirrors.select, copy_plan), each
        then output as the datapath does, after the frame's own outputs."""
        selected = br.mirrors.select(in_port, vlan, outs)
        plan = mirror.copy_plan(selected, vlan, br.ports.values())
        reserved = is_reserved_group(pkt[vnet.ETH_DST])
        for m in selected:
            copies = [e for e in plan if e[0] is m and not (e[4] and reserved)]
            if not copies:
                if m.out is not None:
                    why = f"output port {m.out.name} is {_state(m.out)}"
                elif vlan == m.out_vlan:
                    why = f"the frame is in output VLAN {vlan} already"
                elif reserved:
                    why = "never to an output VLAN for a reserved group address"
                else:
                    why = f"no port is up and carries output VLAN {m.out_vlan}"
                self._step("mirror", br, None, f"mirror {m.name}: no copy ({why})", depth)
            for _, p, copy_vlan, tagged, _ in copies:
                self._step("mirror", br, p, f"mirror {m.name}: copy to {p.name}", depth)
                q = mirror.reform(pkt, has_tag, vid, copy_vlan, tagged)
                self._output(br, p, q, copy_vlan, tagged, has_tag, vid, depth)

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

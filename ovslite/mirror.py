"""Port mirrors, after Open vSwitch's Mirror table: which frames are copied where.

A mirror selects frames received on its source ports (select-src-port), sent
on its destination ports (select-dst-port), or both on every port
(select-all), optionally only in some VLANs (select-vlan, the VLAN inside
the bridge), and sends a copy to one port (output-port, "SPAN") or floods it
in one VLAN (output-vlan, "RSPAN") to every port carrying that VLAN. The rules
are OVS's (ofproto-dpif-xlate.c mirror_packet, ofproto-dpif-mirror.c):

- an output port carries copies only: what it receives is dropped (counted as
  "mirror-output"), and it is left out of forwarding, flooding and learning
  (Bridge.Reach skips `Port.mirror_out`);
- a frame goes to each output at most once, however many selections and
  mirrors match it (mirrors with the same output share it: the first by name
  sends the copy, as OVS's dup_mirrors);
- a copy to an output port takes the form that port's VLAN mode gives VLAN V
  (access: untagged; trunk, native-tagged: tagged unless VLAN 0;
  native-untagged: untagged in its own VLAN), whether or not it carries V;
- a copy to an output VLAN is not made for a frame already in that VLAN nor
  for a reserved group destination (STP, LACP...); it goes to every port that
  is up, carries the VLAN and is no mirror's output, the ingress port
  included, re-tagged with the output VLAN;
- a mirror whose output port was deleted stays configured but disabled (OVS
  keeps the Mirror row without output_port and ignores it); del-port takes the
  port out of every mirror's selections.

The core part here is pure: `Mirrors.select` picks the mirrors, `copy_plan`
turns them into copies (cached per ingress port, VLAN and egress ports until
the bridge's version changes), `copy` makes them; `forward` runs a batch
through the bridge and collects the copies, which the datapath sends after
the frames themselves (so copies never delay them). Only a mirror that selects
by destination port makes a bridge forward frames from other ports one at a
time, to know where each went (a few microseconds a frame, measured in
docs/mirrors.md); the flow cache never caches a frame a mirror would select
(Bridge.unicast_path asks `unicast_selected`), and a bridge with no mirror
that could select a port's frames forwards them as if it had none.

The configuration (checks, the stored form) is ovslite.mirrorconf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bridge import is_reserved_group, retag
from .vnet import MIN_PACKET_LEN

if TYPE_CHECKING:
    from .bridge import Bridge
    from .port import Port

#: the drop reason of frames received on a mirror's output port
OUTPUT_DROP = "mirror-output"


# -- the running mirrors ---------------------------------------------------------------------
class Mirror:
    """One configured mirror, resolved to ports, with its counters."""

    __slots__ = ("name", "conf", "select_all", "src", "dst", "vlans", "out", "out_vlan",
                 "packets", "bytes", "dropped")

    def __init__(self, name: str, conf: dict, ports: dict):
        self.name = name
        self.conf = conf
        self.select_all = conf.get("select-all", False)
        self.src = frozenset(ports[p] for p in conf.get("select-src-port", ()) if p in ports)
        self.dst = frozenset(ports[p] for p in conf.get("select-dst-port", ()) if p in ports)
        vlans = conf.get("select-vlan")
        self.vlans = frozenset(vlans) if vlans else None  # None: every VLAN
        self.out: Port | None = ports.get(conf["output-port"]) if "output-port" in conf else None
        self.out_vlan: int | None = conf.get("output-vlan")
        #: copies sent, their bytes (without virtio_net_hdr), copies the output could not take
        self.packets = self.bytes = self.dropped = 0

    @property
    def active(self) -> bool:
        return self.out is not None or self.out_vlan is not None

    @property
    def reason(self) -> str:
        """Why the mirror does nothing ('' if it is active)."""
        return "" if self.active else "its output port was deleted"

    @property
    def identity(self) -> tuple:
        """What the mirror is, ports included (a port re-created is another port)."""
        return (self.name, self.conf, self.select_all, self.src, self.dst, self.vlans, self.out,
                self.out_vlan)

    @property
    def output_key(self):
        return ("port", self.out) if self.out is not None else ("vlan", self.out_vlan)


class Mirrors:
    """A bridge's mirrors: `by_name` all of them, `active` those with an output.

    `plan` turns a selection into the copies to make, cached per (ingress port, VLAN,
    egress ports) until the bridge's version changes (ports, settings, states).
    """

    def __init__(self, mirrors: list[Mirror]):
        self.by_name = {m.name: m for m in mirrors}
        self.active = tuple(m for m in sorted(mirrors, key=lambda m: m.name) if m.active)
        self.outputs = frozenset(m.out for m in self.active if m.out is not None)
        self._src = frozenset(p for m in self.active for p in m.src)
        #: some mirror selects frames by where they are sent
        self._by_dst = any(m.dst or m.select_all for m in self.active)
        self._plans: dict = {}
        self._version = None

    def may_select(self, in_port: Port) -> bool:
        """Whether any frame received on `in_port` could be mirrored (else: no per-frame work)."""
        return self._by_dst or in_port in self._src

    def by_destination(self, in_port: Port) -> bool:
        """Whether a frame from `in_port` may be selected by where it goes (a mirror's
        select-dst-port other than `in_port`, `in_port` not being that mirror's source):
        then `forward` must know each frame's egress ports."""
        return any(m.dst and not m.select_all and in_port not in m.src
                   and not m.dst <= {in_port} for m in self.active)

    def select(self, in_port: Port, vlan: int, outs) -> tuple[Mirror, ...]:
        """The mirrors that copy a frame received on `in_port` in `vlan` and sent to the
        ports `outs`: one per distinct output (the first by name), in name order."""
        chosen = []
        taken = set()
        for m in self.active:
            if m.vlans is not None and vlan not in m.vlans:
                continue
            if not (m.select_all or in_port in m.src or any(p in m.dst for p in outs)):
                continue
            key = m.output_key
            if key not in taken:
                taken.add(key)
                chosen.append(m)
        return tuple(chosen)

    def unicast_selected(self, in_port: Port, vlan: int, out: Port) -> bool:
        return bool(self.select(in_port, vlan, (out,)))

    def plan(self, in_port: Port, vlan: int, outs: frozenset, ports, version: int) -> tuple:
        """The copies of a frame (see `copy_plan`), cached."""
        if version != self._version or len(self._plans) >= PLAN_LIMIT:
            self._plans.clear()
            self._version = version
        key = (in_port, vlan, outs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = copy_plan(self.select(in_port, vlan, outs), vlan, ports)
        return plan


#: cached plans per bridge at most (emptied when full)
PLAN_LIMIT = 4096


def copy_plan(selected, vlan: int, ports) -> tuple:
    """((Mirror, Port, VLAN, tagged, by_vlan), ...): the copies the `selected` mirrors make
    of a frame in `vlan`; `ports`, the bridge's, for an output VLAN's flood (by_vlan: such
    a copy, which a reserved group destination does not get)."""
    plan = []
    for m in selected:
        out = m.out
        if out is not None:
            if out.up:  # a down output would only fail to send
                plan.append((m, out, vlan, output_tagged(out, vlan), False))
            continue
        out_vlan = m.out_vlan
        if vlan == out_vlan:
            continue
        for p in ports:
            if p.up and not p.mirror_out:
                tagged = p.egress_tagged(out_vlan)
                if tagged is not None:
                    plan.append((m, p, out_vlan, tagged, True))
    return tuple(plan)


def copy(plan: tuple, pkt, has_tag: bool, vid: int, copies: dict) -> None:
    """Append the copies of `pkt` (tagged `vid` if `has_tag`) that `plan` makes to
    copies[(Mirror, Port)]; ports that want the same form share one object."""
    forms = None
    reserved = None
    for m, port, vlan, tagged, by_vlan in plan:
        if by_vlan:
            if reserved is None:
                reserved = is_reserved_group(pkt[10:16])
            if reserved:
                continue
        if tagged:
            unchanged = has_tag and vid == vlan
        else:
            unchanged = not has_tag
        if unchanged:
            q = pkt
        else:
            if forms is None:
                forms = {}
            q = forms.get((vlan, tagged))
            if q is None:
                q = forms[(vlan, tagged)] = reform(pkt, has_tag, vid, vlan, tagged)
        batch = copies.get((m, port))
        if batch is None:
            copies[(m, port)] = [q]
        else:
            batch.append(q)


def output_tagged(port: Port, vlan: int) -> bool:
    """Whether a copy in `vlan` leaves output port `port` tagged (OVS's xvlan_output_translate)."""
    mode = port.mode
    if mode == "access" or vlan == 0:
        return False
    if mode == "native-untagged":
        return vlan != port.tag
    return True


def reform(pkt, has_tag: bool, vid: int, vlan: int, tagged: bool):
    """`pkt` (tagged with `vid` if `has_tag`) tagged with `vlan`, or untagged: the same
    object when it already is (a GSO frame keeps its virtio_net_hdr, shifted if retagged)."""
    if tagged:
        return pkt if has_tag and vid == vlan else retag(pkt, has_tag, vlan, True)
    return retag(pkt, True, vlan, False) if has_tag else pkt


def configure(bridge: Bridge, conf: dict) -> None:
    """Give `bridge` the mirrors of its stored configuration ("mirrors"), keeping the
    counters of those that did not change; nothing happens if none did (a bridge's
    version, which ends its cached flows, moves only for a real change)."""
    current = bridge.mirrors
    old = current.by_name if current is not None else {}
    mirrors = []
    for name, mconf in conf.items():
        m = Mirror(name, mconf, bridge.ports)
        prev = old.get(name)
        if prev is not None and prev.conf == mconf:
            m.packets, m.bytes, m.dropped = prev.packets, prev.bytes, prev.dropped
        mirrors.append(m)
    if [m.identity for m in mirrors] == [m.identity for m in old.values()]:
        return
    bridge.set_mirrors(Mirrors(mirrors) if mirrors else None)


# -- forwarding --------------------------------------------------------------------------------
def forward(bridge: Bridge, in_port: Port, packets: list, now: float) -> tuple[dict, dict]:
    """Bridge.forward for a bridge with mirrors: (outputs, copies), copies as
    {(Mirror, Port): [packets]}, to be sent after the outputs.

    When no mirror selects frames from `in_port` by where they go, the batch is forwarded
    whole and each accepted frame's copies depend on its VLAN only; otherwise frame by
    frame, to know each one's egress ports."""
    mirrors = bridge.mirrors
    if in_port.mirror_out:
        in_port.stats.drop(OUTPUT_DROP, len(packets))
        return {}, {}
    if not in_port.up or not mirrors.may_select(in_port):
        return bridge.forward(in_port, packets, now), {}
    copies: dict = {}
    ports = bridge.ports.values()
    version = bridge.version
    plan_for = mirrors.plan
    ingress_vlan = bridge.ingress_vlan
    if not mirrors.by_destination(in_port):
        outputs = bridge.forward(in_port, packets, now)
        last_vlan = plan = None
        for pkt in packets:
            if len(pkt) >= MIN_PACKET_LEN:
                vlan, has_tag, vid = ingress_vlan(in_port, pkt)
                if vlan is None:
                    continue  # not accepted on the ingress port: not mirrored (as OVS)
                if vlan != last_vlan:
                    plan = plan_for(in_port, vlan, NOWHERE, ports, version)
                    last_vlan = vlan
                if plan:
                    copy(plan, pkt, has_tag, vid, copies)
        return outputs, copies
    outputs = {}
    forward_one = bridge.forward
    for pkt in packets:
        out = forward_one(in_port, [pkt], now)
        for port, batch in out.items():
            have = outputs.get(port)
            if have is None:
                outputs[port] = batch
            else:
                have += batch
        if len(pkt) >= MIN_PACKET_LEN:
            vlan, has_tag, vid = ingress_vlan(in_port, pkt)
            if vlan is not None:
                plan = plan_for(in_port, vlan, frozenset(out), ports, version)
                if plan:
                    copy(plan, pkt, has_tag, vid, copies)
    return outputs, copies


NOWHERE: frozenset = frozenset()

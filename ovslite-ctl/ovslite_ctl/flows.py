"""`ovslite-ctl dump-flows [BRIDGE]`: the datapath's flow cache, like `ovs-appctl dpctl/dump-flows`.

The daemon caches where known unicast frames go (ovslite.flows); each line
is one cached flow: what it matches (ingress port and the Ethernet header),
what it has sent, how long ago it last sent a frame, and where its frames
go, through every patch pair on the way:

    flows: 1, hits: 120, misses: 5
    in_port=e0,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,dl_type=0x0800 packets:120, bytes:7200, used:0.400s, actions:pa0>pb0,output:e4

A tagged flow shows `dl_vlan=N` instead of `dl_type` (the EtherType after
the tag is not part of the key). The first line counts the whole datapath,
whose cache every bridge shares, even when BRIDGE limits the flows listed.
A flow stays listed until a frame finds it stale (a bridge's settings or a
MAC it relies on changed), as datapath flows do until revalidated.
"""

from __future__ import annotations

import click

from .common import Ctl, check_name


def render_flows(d: dict) -> list[str]:
    s = d["stats"]
    # dpctl/show puts these on two lines ("lookups: hit:H missed:M lost:L", "flows: N");
    # one line, in the flows' own "name: value" style, keeps the summary to one line
    # above them, and there is no "lost" here (misses are handled inline, never queued).
    lines = [f"flows: {s['flows']}, hits: {s['hits']}, misses: {s['misses']}"]
    for f in d["flows"]:
        match = f"in_port={f['in_port']},dl_src={f['dl_src']},dl_dst={f['dl_dst']},"
        match += f"dl_vlan={f['dl_vlan']}" if f["dl_vlan"] is not None else f"dl_type={f['dl_type']:#06x}"
        actions = ",".join([*(f"{h['port']}>{h['peer']}" for h in f["hops"]), f"output:{f['output']}"])
        lines.append(f"{match} packets:{f['packets']}, bytes:{f['bytes']}, used:{f['used']:.3f}s, "
                     f"actions:{actions}")
    return lines


@click.command("dump-flows")
@click.argument("bridge", required=False)
@click.pass_obj
def dump_flows(ctl: Ctl, bridge):
    """Print the datapath's cached flows (those entering on BRIDGE's ports, if given).

    \b
    First the whole datapath's counters: flows cached, frames that hit a flow,
    frames that took the slow path. Then one flow a line, like
    ovs-appctl dpctl/dump-flows: ingress port, MACs, EtherType or VLAN,
    packets, bytes, seconds since last used, and actions (patch pairs crossed,
    then the output port).
    """
    if bridge is not None:
        check_name(bridge, "bridge")
    with ctl.client() as c:
        data = c.flows(bridge)
    ctl.emit(data, render_flows)


COMMANDS = (dump_flows,)

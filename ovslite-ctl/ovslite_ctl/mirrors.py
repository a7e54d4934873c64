"""`ovslite-ctl add-mirror / del-mirror / list-mirrors`: port mirrors, as OVS's Mirror table.

    ovslite-ctl add-mirror br0 m0 --select-src-port p1 --select-dst-port p1 --output-port span0
    ovslite-ctl add-mirror br0 rspan --select-all --select-vlan 10,20 --output-vlan 999
    ovslite-ctl list-mirrors br0 [--json]

What a mirror selects and where its copies go is explained in docs/mirrors.md.
Port lists and VLAN lists may be given as repeated options or comma-separated.
Everything that can be checked here is (names, VLAN numbers, one output);
the daemon checks the rest (the ports exist, the output is not also
selected, the name is free) and refuses with one line.
"""

from __future__ import annotations

import errno
import json

import click

from ovslite import mirrorconf

from .client import Client, DaemonError
from .common import Ctl, check_name


def _split(values) -> list[str]:
    return [v for text in values for v in text.split(",") if v]


def _ports(values, what: str) -> list[str]:
    names = _split(values)
    for name in names:
        check_name(name, what)
    if len(set(names)) != len(names):
        raise click.UsageError(f"{what}: a port is given twice")
    return names


def render_mirror(m: dict, indent: str = "") -> list[str]:
    select = []
    if m["select_all"]:
        select.append("all ports")
    if m["select_src_port"]:
        select.append(f"received on {', '.join(m['select_src_port'])}")
    if m["select_dst_port"]:
        select.append(f"sent on {', '.join(m['select_dst_port'])}")
    text = "; ".join(select) or "nothing"
    if m["select_vlan"]:
        text += f"; in VLAN {m['select_vlan']}"
    if m["output_port"] is not None:
        output = f"port {m['output_port']}"
    elif m["output_vlan"] is not None:
        output = f"VLAN {m['output_vlan']}"
    else:
        output = "none"
    state = f"disabled ({m['disabled']})" if m["disabled"] else "active"
    return [f"{indent}Mirror {m['name']}", f"{indent}    select: {text}",
            f"{indent}    output: {output}", f"{indent}    state: {state}",
            f"{indent}    copies: packets={m['packets']}, bytes={m['bytes']}, "
            f"dropped={m['dropped']}"]


def of_daemon(client: Client) -> list[dict]:
    """Every mirror, for `show`: none from a daemon older than mirrors (EOPNOTSUPP)."""
    try:
        return client.mirrors()
    except DaemonError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return []
        raise


@click.command("add-mirror")
@click.argument("bridge")
@click.argument("name")
@click.option("--select-all", is_flag=True, help="every frame received or sent on any port")
@click.option("--select-src-port", "src", multiple=True, metavar="PORT[,PORT...]",
              help="frames received on PORT (repeatable)")
@click.option("--select-dst-port", "dst", multiple=True, metavar="PORT[,PORT...]",
              help="frames sent on PORT (repeatable)")
@click.option("--select-vlan", "vlans", multiple=True, metavar="VLANS",
              help="only frames in these VLANs, e.g. 10 or 10,20-30 (repeatable)")
@click.option("--output-port", metavar="PORT", help="send the copies to PORT (reserved for them)")
@click.option("--output-vlan", metavar="VLAN", help="flood the copies in VLAN (1-4094)")
@click.pass_obj
def add_mirror(ctl: Ctl, bridge, name, select_all, src, dst, vlans, output_port, output_vlan):
    """Add mirror NAME to BRIDGE: copies of the selected frames go to one output.

    \b
    Select with --select-all, --select-src-port, --select-dst-port (and narrow
    with --select-vlan); give exactly one of --output-port and --output-vlan.
    The output port carries copies only: what it receives is dropped.
    """
    check_name(bridge, "bridge")
    try:
        mirrorconf.check_name(name)
        vlan_text = mirrorconf.vlan_text(mirrorconf.parse_vlans(",".join(vlans))) if vlans else None
        out_vlan = mirrorconf.parse_output_vlan(output_vlan) if output_vlan is not None else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    src_ports = _ports(src, "--select-src-port")
    dst_ports = _ports(dst, "--select-dst-port")
    if output_port is not None:
        check_name(output_port, "--output-port")
    if (output_port is None) == (out_vlan is None):
        raise click.UsageError("give exactly one of --output-port and --output-vlan")
    if not (select_all or src_ports or dst_ports):
        raise click.UsageError("select something: --select-all, --select-src-port or "
                               "--select-dst-port")
    with ctl.client() as c:
        c.add_mirror(bridge, name, select_all, src_ports, dst_ports, vlan_text, output_port,
                     out_vlan)


@click.command("del-mirror")
@click.argument("bridge")
@click.argument("name")
@click.pass_obj
def del_mirror(ctl: Ctl, bridge, name):
    """Remove mirror NAME from BRIDGE."""
    check_name(bridge, "bridge")
    try:
        mirrorconf.check_name(name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with ctl.client() as c:
        c.del_mirror(bridge, name)


@click.command("list-mirrors")
@click.argument("bridge")
@click.option("--json", "as_json", is_flag=True, help="print JSON (as --format json)")
@click.pass_obj
def list_mirrors(ctl: Ctl, bridge, as_json):
    """Print BRIDGE's mirrors: selection, output, state and copies sent and dropped.

    \b
    packets/bytes: copies sent (bytes without the virtio_net_hdr); dropped:
    copies the output could not take at once (a full ring or socket buffer:
    a mirror never holds up the frames it copies).
    """
    check_name(bridge, "bridge")
    with ctl.client() as c:
        mirrors = c.mirrors(bridge)
    if as_json:
        click.echo(json.dumps(mirrors, indent=2, sort_keys=True))
        return
    ctl.emit(mirrors, lambda ms: [line for m in ms for line in render_mirror(m)])


COMMANDS = (add_mirror, del_mirror, list_mirrors)

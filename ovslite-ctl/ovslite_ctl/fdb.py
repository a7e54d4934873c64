"""ovslite-ctl's MAC learning table commands: fdb-show, fdb-add, fdb-del, fdb-flush, fdb-stats.

Static entries (fdb-add) are kept in the daemon's database, never age and are
never moved by learning; fdb-flush forgets learned entries only, like
`bridge fdb flush`. fdb-stats follows `ovs-appctl fdb/stats-show`.
"""

from __future__ import annotations

import click

from .common import Ctl, check_mac, check_name

VLAN = click.IntRange(0, 4094)


def render_fdb(entries: list[dict]) -> list[str]:
    if any("remote" in e for e in entries):  # a tunnel port with several remotes
        entries = [{**e, "port": f"{e['port']} ({e['remote']})"} if "remote" in e else e
                   for e in entries]
    width = max([4] + [len(e["port"]) for e in entries])
    # %-formatting with one format string: f-strings re-parse each field's spec per
    # line, ~3 us a line, which was a third of printing 100,000 entries.
    line = f"%{width + 1}s  %4d  %-17s  %3s"
    return [f"{'port':>{width + 1}}  VLAN  MAC                Age",
            *(line % (e["port"], e["vlan"], e["mac"], "static" if e["static"] else e["age"])
              for e in entries)]


def render_stats(s: dict) -> list[str]:
    return [
        f'Statistics for bridge "{s["bridge"]}":',
        # mac-table-size bounds learned entries only (statics are the configuration's)
        f"  Current/maximum learned MAC entries     : {s['entries'] - s['static']}/{s['max_entries']}",
        f"  Current static MAC entries in the table : {s['static']}",
        f"  Total number of learned MAC entries     : {s['learned']}",
        f"  Total number of expired MAC entries     : {s['aged']}",
        f"  Total number of evicted MAC entries     : {s['evicted']}",
        f"  Total number of port moved MAC entries  : {s['moved']}",
        f"  MAC aging time in seconds               : {s['aging_time']:g}",
    ]


@click.command("fdb-show")
@click.argument("bridge")
@click.option("--vlan", type=VLAN, help="only this VLAN (0: untagged)")
@click.pass_obj
def fdb_show(ctl: Ctl, bridge, vlan):
    """Print BRIDGE's MAC learning table (port, VLAN, MAC, age in seconds or static).

    A MAC behind a tunnel port with several remotes shows the remote beside the
    port: `t0 (192.168.50.2)`.
    """
    check_name(bridge, "bridge")
    with ctl.client() as c:
        entries = c.fdb(bridge, vlan)
    ctl.emit(entries, render_fdb)


@click.command("fdb-add")
@click.argument("bridge")
@click.argument("mac")
@click.argument("port")
@click.option("--vlan", type=VLAN, help="the entry's VLAN (default: each VLAN PORT carries)")
@click.option("--remote", metavar="IP", help="tunnel port: MAC is behind this one of its remotes")
@click.pass_obj
def fdb_add(ctl: Ctl, bridge, mac, port, vlan, remote):
    """Add a static entry: MAC is behind PORT of BRIDGE (replaces a learned one).

    Without --vlan, as `bridge fdb add`: one entry in each VLAN PORT carries (an
    access port's tag, a trunk's listed VLANs; a trunk of every VLAN: its
    untagged VLAN). A VLAN PORT does not carry is refused. With --remote (PORT
    a tunnel port with several remote_ip), frames to MAC go to that remote only.
    """
    check_name(bridge, "bridge")
    mac = check_mac(mac)
    check_name(port, "port")
    with ctl.client() as c:
        c.fdb_add(bridge, mac, port, vlan, remote)


@click.command("fdb-del")
@click.argument("bridge")
@click.argument("mac")
@click.option("--vlan", type=VLAN, help="only the entry of this VLAN (default: every VLAN)")
@click.pass_obj
def fdb_del(ctl: Ctl, bridge, mac, vlan):
    """Remove MAC's entries (static or learned) from BRIDGE's table."""
    check_name(bridge, "bridge")
    mac = check_mac(mac)
    with ctl.client() as c:
        c.fdb_del(bridge, mac, vlan)


@click.command("fdb-flush")
@click.argument("bridge")
@click.option("--port", help="only the entries learned on this port")
@click.pass_obj
def fdb_flush(ctl: Ctl, bridge, port):
    """Forget the MACs BRIDGE learned (static entries stay); print how many."""
    check_name(bridge, "bridge")
    if port is not None:
        check_name(port, "port")
    with ctl.client() as c:
        count = c.fdb_flush(bridge, port)
    data = {"bridge": bridge, "port": port, "flushed": count}
    ctl.emit(data, lambda d: [f"{count} MAC entr{'y' if count == 1 else 'ies'} flushed"])


@click.command("fdb-stats")
@click.argument("bridge")
@click.pass_obj
def fdb_stats(ctl: Ctl, bridge):
    """Print BRIDGE's MAC table counters (like ovs-appctl fdb/stats-show)."""
    check_name(bridge, "bridge")
    with ctl.client() as c:
        stats = {"bridge": bridge, **c.fdb_stats(bridge)}
    ctl.emit(stats, render_stats)


COMMANDS = (fdb_show, fdb_add, fdb_del, fdb_flush, fdb_stats)

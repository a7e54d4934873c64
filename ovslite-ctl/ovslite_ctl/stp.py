"""`ovslite-ctl stp-show [BRIDGE]`: what `ovs-appctl stp/show` and `rstp/show` print.

Per bridge with stp or rstp on: the root's id and timers (or "This bridge is
the root"), the root path cost and root port, this bridge's id and timers,
then one line per port: role, state, path cost and priority.number, as OVS
prints them. `--format json` gives everything the daemon knows (designated
bridge and port, BPDU counters, malformed BPDUs by reason, topology changes).
"""

from __future__ import annotations

import click

from .common import Ctl, check_name


def _seconds(value) -> str:
    return f"{value:g}s" if isinstance(value, (int, float)) else f"{value}s"


def _ids(lines: list, prefix: str, ident: dict, times: dict) -> None:
    lines.append(f"  {prefix}-priority    {ident.get('priority')}")
    lines.append(f"  {prefix}-system-id   {ident.get('mac')}")
    lines.append(f"  {prefix}-hello-time  {_seconds(times.get('hello_time'))}")
    lines.append(f"  {prefix}-max-age     {_seconds(times.get('max_age'))}")
    lines.append(f"  {prefix}-fwd-delay   {_seconds(times.get('forward_delay'))}")


def render_stp(trees: list[dict]) -> list[str]:
    lines = []
    for t in trees:
        prefix = t.get("mode", "stp")
        root, bridge = t.get("root", {}), t.get("bridge", {})
        lines += [f"---- {t['name']} ----", f"Root ID ({prefix}):"]
        _ids(lines, prefix, root, t)
        if root.get("is_this_bridge"):
            lines.append("  This bridge is the root")
        else:
            lines.append(f"  root-port       {t.get('root_port')}")
            lines.append(f"  root-path-cost  {t.get('root_path_cost')}")
        lines += ["", "Bridge ID:"]
        _ids(lines, prefix, bridge, bridge)
        lines += ["", f"  {'Interface':<10} {'Role':<10} {'State':<10} {'Cost':<9} Pri.Nbr",
                  f"  {'-' * 10} {'-' * 10} {'-' * 10} {'-' * 9} -------"]
        for name, p in sorted(t.get("ports", {}).items(), key=lambda kv: kv[1].get("number", 0)):
            lines.append(f"  {name:<10} {p.get('role', ''):<10} {p.get('state', ''):<10} "
                         f"{p.get('cost', ''):<9} {p.get('priority', '')}.{p.get('number', '')}")
        lines.append("")
    return lines[:-1] if lines else lines


@click.command("stp-show")
@click.argument("bridge", required=False)
@click.pass_obj
def stp_show(ctl: Ctl, bridge):
    """Print the spanning tree of BRIDGE (or of every bridge with stp or rstp on),
    like ovs-appctl stp/show and rstp/show.
    """
    if bridge is not None:
        check_name(bridge, "bridge")
    with ctl.client() as c:
        trees = c.stp(bridge)
    ctl.emit(trees, render_stp)


COMMANDS = (stp_show,)

"""`ovslite-ctl trace`: ask the daemon what it would do with one frame, and print it.

    ovslite-ctl trace br0 in_port=p1 dl_src=02:00:00:00:00:01 dl_dst=ff:ff:ff:ff:ff:ff
    ovslite-ctl trace br0 in_port=p1,dl_src=...,dl_dst=...,dl_vlan=10 --generate
    ovslite-ctl --format json trace br0 ...

The fields are checked here, so a bad MAC or VLAN never reaches the daemon;
the daemon builds the frame, walks it through its bridges (ovslite.trace) and
replies with one message per step and a final one with the outputs. The text
rendering follows ofproto/trace: a header per bridge, numbered steps, bridges
entered through patch ports indented, and a one-line result. docs/trace.md
explains how to read it.
"""

from __future__ import annotations

import click

from ovslite import trace as tr
from ovslite.control.messages import Cmd
from ovslite.names import check_ifname
from ovslite.vnet import format_mac

INDENT = "    "


def request_values(bridge: str, flow: tr.Flow, generate: bool) -> dict:
    return {"bridge": bridge, "port": flow.in_port, "dl_src": format_mac(flow.dl_src),
            "dl_dst": format_mac(flow.dl_dst), "vlan": flow.dl_vlan, "dl_type": flow.dl_type,
            "generate": generate}


def parse_fields(fields: tuple[str, ...]) -> tr.Flow:
    """The command line's key=value fields -> Flow; click.UsageError (exit 2) if bad."""
    try:
        flow = tr.parse_flow(fields)
        check_ifname(flow.in_port, "port")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return flow


def run_trace(ctl, bridge: str, fields: tuple[str, ...], generate: bool) -> None:
    flow = parse_fields(fields)
    with ctl.client() as c:
        msgs = c.request(Cmd.TRACE, request_values(bridge, flow, generate), dump=True)
    ctl.emit(tr.from_messages(msgs), render_text)


def render_text(d: dict) -> list[str]:
    """The trace as ofproto/trace-like text (see docs/trace.md)."""
    lines: list[str] = []
    n = 0
    inject = None
    for s in d["steps"]:
        pad = INDENT * s["depth"]
        kind = s["kind"]
        if kind == "flow":
            lines.append(f"Flow: {s['detail']}")
        elif kind == "bridge":
            title = f'bridge("{s["bridge"]}") from port {s["port"]}'
            lines += ["", pad + title, pad + "-" * len(title)]
        elif kind == "inject":
            inject = s["detail"]
        else:
            n += 1
            lines.append(f"{pad}{n:2d}. {kind}: {s['detail']}")
    lines += ["", f"Final result: {d['result']}"]
    if d["outputs"]:
        for drop in d["drops"]:
            where = drop["bridge"] if drop["port"] is None else f"{drop['bridge']}:{drop['port']}"
            lines.append(f"Also dropped at {where}: {drop['detail']}")
    if inject is not None:
        lines.append(inject[0].upper() + inject[1:])
    return lines

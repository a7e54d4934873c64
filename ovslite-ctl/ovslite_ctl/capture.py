"""`ovslite-ctl capture`: stream a port's frames as pcap or tcpdump-like lines.

Works on every port type, patch ports included (there is no kernel device to
run tcpdump on). `-w -` writes a pcap stream to stdout for `tcpdump -r -`;
without -w each frame is printed as one line. Ctrl-C ends the capture cleanly;
the daemon detaches it when the connection closes.
"""

from __future__ import annotations

import sys

import click

from ovslite import pcap
from ovslite.control.messages import Cmd

from .client import Client

DIRECTION_NAMES = {"i": "in", "o": "out"}


def run_capture(client: Client, port: str, write: str | None, count: int | None, direction: str,
                outer: bool = False) -> None:
    out = None
    if write is not None:
        out = sys.stdout.buffer if write == "-" else open(write, "wb")  # noqa: SIM115
        out.write(pcap.global_header())
        out.flush()
    captured = 0
    summary = None
    values = {"port": port, "direction": direction, "count": count or 0, "outer": outer}
    try:
        for msg in client.stream(Cmd.CAPTURE, values):
            blob = msg.get("pcap")
            if blob is None:
                summary = msg
                continue
            if out is not None:
                out.write(blob)
                out.flush()
                captured += len(msg.get("directions", ""))
                continue
            dirs = msg.get("directions", "")
            for i, (ts, length, data) in enumerate(pcap.iter_records(blob)):
                where = DIRECTION_NAMES.get(dirs[i : i + 1], "?")
                click.echo(pcap.summary(ts, port, where, length, data))
                captured += 1
    except KeyboardInterrupt:
        pass
    finally:
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    dropped = summary.get("dropped", 0) if summary else None
    what = "encapsulated packets" if outer else "frames"
    line = f"{captured} {what} captured on {port}{' (underlay)' if outer else ''}"
    if dropped:
        line += f", {dropped} dropped by the capture (reader too slow; the dataplane lost none)"
    if summary and summary.get("reason"):
        line += f"; {summary['reason']}"
    click.echo(line, err=True)

"""`ovslite-ctl monitor`: print switch and MAC learning events as they happen.

One line per event: local time, event name, fields as key=value (a value
with spaces is quoted as a JSON string). `--format json` prints one JSON
object per line instead, with `time` in seconds since the epoch. Ctrl-C ends
it with exit status 0. A monitor that cannot keep up loses events, never
slows the switch: the daemon then reports `lost count=N` where they were.
"""

from __future__ import annotations

import json
from datetime import datetime

import click

from ovslite.control.messages import McGroup

from .common import Ctl, check_name

GROUPS = {"config": McGroup.CONFIG, "state": McGroup.STATE, "fdb": McGroup.FDB}
#: the order fields are printed in; others follow sorted
FIELDS = ("bridge", "port", "type", "port_no", "state", "reason", "old", "new", "vlan", "mac", "old_port",
          "settings", "count")


def normalize(event: dict) -> dict:
    """A Client.monitor() event -> what is printed: time in seconds, state, count."""
    out = dict(event)
    out["time"] = event.get("time", 0) / 1e9
    if "up" in out:
        out["state"] = "up" if out.pop("up") else "down"
    if "dropped" in out:
        out["count"] = out.pop("dropped")
    return out


def _value(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text)
    return text


def render_event(event: dict) -> str:
    when = datetime.fromtimestamp(event["time"]).isoformat(timespec="milliseconds")
    keys = [k for k in FIELDS if k in event]
    keys += sorted(k for k in event if k not in FIELDS and k not in ("time", "event"))
    fields = " ".join(f"{k}={_value(event[k])}" for k in keys)
    return f"{when} {event['event']}{' ' + fields if fields else ''}"


@click.command("monitor")
@click.option("--bridge", help="only this bridge's events")
@click.option("--group", "groups", multiple=True, type=click.Choice(list(GROUPS)),
              help="config (added, removed, settings), state (up/down), fdb (MACs); "
                   "repeatable; default all")
@click.pass_obj
def monitor(ctl: Ctl, bridge, groups):
    """Print events as they happen until Ctrl-C: bridges and ports added or
    removed, ports up or down (with the reason), port settings changed, MACs
    learned, moved, aged out or evicted.
    """
    if bridge is not None:
        check_name(bridge, "bridge")
    mask = 0
    for name in groups:
        mask |= GROUPS[name]
    client = ctl.client()  # --timeout bounds the wait for the subscription only
    with client:
        try:
            for event in client.monitor(bridge, mask or None):
                if event.get("event") == "subscribed":
                    client.sock.settimeout(None)  # events come when they come
                    continue
                event = normalize(event)
                if ctl.fmt == "json":
                    click.echo(json.dumps(event, sort_keys=True))
                else:
                    click.echo(render_event(event))
        except KeyboardInterrupt:
            pass

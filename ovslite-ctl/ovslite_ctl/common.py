"""What every ovslite-ctl command module shares: the context object and argument checks.

Argument checks raise click.UsageError (exit status 2, one line) before
anything is sent to the daemon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from ovslite import portconfig
from ovslite.confcheck import parse_bridge_setting
from ovslite.names import check_ifname, check_netns
from ovslite.vnet import format_mac, parse_mac

from .client import Client

PROG = "ovslite-ctl"


@dataclass
class Ctl:
    socket: str
    fmt: str
    timeout: float
    may_exist: bool
    if_exists: bool

    def client(self) -> Client:
        return Client(self.socket, self.timeout)

    def emit(self, data, render) -> None:
        """Print `data` as JSON, or the lines `render(data)` returns as text."""
        if self.fmt == "json":
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        else:  # one write: 100,000 echo calls of a line each cost ~0.4 s
            lines = render(data)
            if lines:
                click.echo("\n".join(lines))


def check_name(name: str, what: str) -> str:
    try:
        return check_ifname(name, what)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def parse_pairs(pairs, what: str = "option") -> dict[str, str]:
    """('a=1', 'b=') -> {'a': '1', 'b': ''}; a missing '=' or a repeated key is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.UsageError(f"invalid {what} {pair!r}: expected key=value")
        if key in out:
            raise click.UsageError(f"{what} {key!r} given more than once")
        out[key] = value
    return out


def port_settings(pairs, new_port: bool = False) -> dict[str, str]:
    """KEY=VALUE port settings, checked as the daemon will (a new port's fully)."""
    settings = parse_pairs(pairs, "setting")
    try:
        parsed = portconfig.parse(settings)
        if new_port:
            portconfig.merge({}, parsed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return settings


def bridge_settings(pairs) -> dict[str, str]:
    """KEY=VALUE bridge settings, checked as the daemon will."""
    settings = parse_pairs(pairs, "setting")
    for key, text in settings.items():
        try:
            parse_bridge_setting(key, text)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    return settings


def port_options(options: dict[str, str]) -> dict[str, str]:
    """add-port's type-specific options: those that name something are checked."""
    for key, what in (("peer", "peer"), ("ifname", "ifname")):
        if key in options:
            check_name(options[key], what)
    if "netns" in options:
        try:
            check_netns(options["netns"])
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    return options


def check_mac(text: str) -> str:
    """A MAC as the user typed it -> 'aa:bb:cc:dd:ee:ff'."""
    try:
        return format_mac(parse_mac(text))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def kv(d: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(d.items())) + "}"

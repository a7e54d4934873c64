"""ovslite-ctl: configure and inspect ovslited, in the style of ovs-vsctl.

    ovslite-ctl [--socket PATH] [--format text|json] [--timeout S] COMMAND ARGS...

Each invocation opens one connection to the daemon's control socket (see
docs/control-protocol.md) and runs one command. Names are checked locally
before anything is sent, so an invalid name never reaches the daemon.

Errors are exactly one line on stderr, "ovslite-ctl: ...", never a traceback.
Exit status: 0 success; 1 the daemon refused the request, could not be
reached or did not answer in time; 2 usage error (bad option, argument, name
or key=value). `--format json` affects the listing commands only.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import click

from ovslite import __version__
from ovslite.names import check_ifname

from .capture import run_capture
from .client import DEFAULT_SOCKET, Client, ControlError

PROG = "ovslite-ctl"
DEFAULT_TIMEOUT = 30.0


class CtlGroup(click.Group):
    """Turns every failure into one stderr line and an exit status."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or PROG, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else ""
            _fail(f"{where + ': ' if where else ''}{exc.format_message()}", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except ControlError as exc:
            _fail(str(exc), 1)
        except BrokenPipeError:
            # stdout closed early (| head): stop quietly, and keep the interpreter
            # from complaining again when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # a bug here must still not print a traceback
            _fail(f"internal error: {exc!r}", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int):
    click.echo(f"{PROG}: {message}", err=True)
    sys.exit(code)


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
        else:
            for line in render(data):
                click.echo(line)


# -- argument checks ------------------------------------------------------------


def _name(name: str, what: str) -> str:
    try:
        return check_ifname(name, what)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.UsageError(f"invalid option {pair!r}: expected key=value")
        if key in out:
            raise click.UsageError(f"option {key!r} given more than once")
        out[key] = value
    return out


# -- formatting -----------------------------------------------------------------


def _kv(d: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(d.items())) + "}"


def _state(port: dict) -> str:
    if port["up"]:
        return "up"
    return f"down ({port['reason']})" if port["reason"] else "down"


def render_show(data: dict) -> list[str]:
    lines = []
    for br in data["bridges"]:
        lines.append(f"Bridge {br['name']}")
        for port in sorted(br["ports"], key=lambda p: p["name"]):
            lines += [f"    Port {port['name']}", f"        type: {port['type']}",
                      f"        state: {_state(port)}"]
            if port["options"]:
                lines.append(f"        options: {_kv(port['options'])}")
    if data.get("version"):
        lines.append(f'ovslite_version: "{data["version"]}"')
    return lines


def render_fdb(entries: list[dict]) -> list[str]:
    width = max([4] + [len(e["port"]) for e in entries])
    lines = [f"{'port':>{width + 1}}  VLAN  MAC                Age"]
    for e in entries:
        age = "static" if e["static"] else str(e["age"])
        lines.append(f"{e['port']:>{width + 1}}  {e['vlan']:4d}  {e['mac']:17}  {age:>3}")
    return lines


def render_dump_ports(bridge: str, ports: list[dict]) -> list[str]:
    lines = [f"bridge {bridge}: {len(ports)} port{'s' if len(ports) != 1 else ''}"]
    for p in ports:
        s = p["stats"]
        head = f"  port {p['number']} ({p['name']}): "
        pad = " " * len(head)
        lines.append(f"{head}rx pkts={s['rx_packets']}, bytes={s['rx_bytes']}, "
                     f"drop={s['rx_dropped']}, errs={s['rx_errors']}")
        lines.append(f"{pad}tx pkts={s['tx_packets']}, bytes={s['tx_bytes']}, "
                     f"drop={s['tx_dropped']}, errs={s['tx_errors']}")
        if s["drops"]:
            drops = ", ".join(f"{k}={v}" for k, v in sorted(s["drops"].items()))
            lines.append(f"{pad}drops: {drops}")
    return lines


# -- commands -------------------------------------------------------------------

ACCEPTS = {"--may-exist": ("add-br", "add-port"), "--if-exists": ("del-br", "del-port")}


@click.group(cls=CtlGroup, invoke_without_command=True, no_args_is_help=False,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", envvar="OVSLITE_SOCKET", default=DEFAULT_SOCKET,
              show_default=True, show_envvar=True, metavar="PATH", help="ovslited's control socket")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="output of the listing commands")
@click.option("--timeout", type=click.FloatRange(min=0), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="give up waiting for the daemon after this long (0: never)")
@click.option("--may-exist", is_flag=True, help="same as the add-br/add-port option")
@click.option("--if-exists", is_flag=True, help="same as the del-br/del-port option")
@click.version_option(__version__, "-V", "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx, socket_path, fmt, timeout, may_exist, if_exists):
    """Configure and inspect the ovslite switch daemon (ovslited).

    Exit status: 0 success, 1 refused by the daemon or daemon unreachable,
    2 usage error.
    """
    if ctx.invoked_subcommand is None:
        raise click.UsageError("missing command name (use --help for help)")
    for flag, given in (("--may-exist", may_exist), ("--if-exists", if_exists)):
        if given and ctx.invoked_subcommand not in ACCEPTS[flag]:
            raise click.UsageError(f"'{ctx.invoked_subcommand}' command has no '{flag}' option")
    ctx.obj = Ctl(socket_path, fmt, timeout, may_exist, if_exists)


@cli.command("add-br")
@click.argument("bridge")
@click.option("--may-exist", is_flag=True, help="no error if the bridge already exists")
@click.pass_obj
def add_br(ctl: Ctl, bridge, may_exist):
    """Create bridge BRIDGE."""
    _name(bridge, "bridge")
    with ctl.client() as c:
        c.add_bridge(bridge, may_exist or ctl.may_exist)


@cli.command("del-br")
@click.argument("bridge")
@click.option("--if-exists", is_flag=True, help="no error if the bridge does not exist")
@click.pass_obj
def del_br(ctl: Ctl, bridge, if_exists):
    """Delete bridge BRIDGE and all of its ports."""
    _name(bridge, "bridge")
    with ctl.client() as c:
        c.del_bridge(bridge, if_exists or ctl.if_exists)


@cli.command("list-br")
@click.pass_obj
def list_br(ctl: Ctl):
    """Print the names of all bridges."""
    with ctl.client() as c:
        names = sorted(b["name"] for b in c.bridges())
    ctl.emit(names, lambda d: d)


@cli.command("add-port")
@click.argument("bridge")
@click.argument("iface")
@click.option("--type", "type_", default="system", show_default=True, help="port type")
@click.option("-o", "--option", "option", multiple=True, metavar="KEY=VALUE",
              help="type-specific option (repeatable)")
@click.option("--peer", help="patch: the peer patch port (-o peer=NAME)")
@click.option("--netns", help="internal: move the interface into this `ip netns` namespace")
@click.option("--netns-pid", "netns_pid", type=click.IntRange(min=1),
              help="internal: move the interface into this process's namespace")
@click.option("--ifname", help="internal: name inside the namespace (e.g. eth0)")
@click.option("--ip", help="internal: address to give it, as CIDR (e.g. 10.0.0.2/24)")
@click.option("--gateway", help="internal: default route via this address")
@click.option("--may-exist", is_flag=True, help="no error if IFACE is already a port of BRIDGE")
@click.pass_obj
def add_port(ctl: Ctl, bridge, iface, type_, option, may_exist, **shortcuts):
    """Add interface IFACE to BRIDGE as a port.

    \b
    Types: system (an existing interface), internal (created by ovslited),
    tap (ovslited opens /dev/net/tun), patch (a cable to another bridge).
    """
    _name(bridge, "bridge")
    _name(iface, "port")
    options = _options(option)
    for key, value in shortcuts.items():
        if value is not None:
            if key in options:
                raise click.UsageError(f"option {key!r} given more than once")
            options[key] = str(value)
    with ctl.client() as c:
        c.add_port(bridge, iface, type_, options, may_exist or ctl.may_exist)


@cli.command("del-port")
@click.argument("names", nargs=-1, required=True, metavar="[BRIDGE] IFACE")
@click.option("--if-exists", is_flag=True, help="no error if the port does not exist")
@click.pass_obj
def del_port(ctl: Ctl, names, if_exists):
    """Remove port IFACE (from BRIDGE, if given)."""
    if len(names) > 2:
        raise click.UsageError("expected [BRIDGE] IFACE")
    bridge = _name(names[0], "bridge") if len(names) == 2 else None
    iface = _name(names[-1], "port")
    with ctl.client() as c:
        c.del_port(iface, bridge, if_exists or ctl.if_exists)


@cli.command("list-ports")
@click.argument("bridge")
@click.pass_obj
def list_ports(ctl: Ctl, bridge):
    """Print the names of BRIDGE's ports, except its local port (as ovs-vsctl)."""
    _name(bridge, "bridge")
    with ctl.client() as c:
        names = sorted(p["name"] for br in c.bridges(bridge) for p in br["ports"]
                       if p["name"] != br["name"])
    ctl.emit(names, lambda d: d)


@cli.command("show")
@click.pass_obj
def show(ctl: Ctl):
    """Print every bridge with its ports, their type and state."""
    with ctl.client() as c:
        data = {"bridges": c.bridges(), "version": c.version().get("version", "")}
    ctl.emit(data, render_show)


@cli.command("fdb-show")
@click.argument("bridge")
@click.pass_obj
def fdb_show(ctl: Ctl, bridge):
    """Print BRIDGE's MAC learning table (port, VLAN, MAC, age in seconds)."""
    _name(bridge, "bridge")
    with ctl.client() as c:
        entries = c.fdb(bridge)
    ctl.emit(entries, render_fdb)


@cli.command("dump-ports")
@click.argument("bridge")
@click.pass_obj
def dump_ports(ctl: Ctl, bridge):
    """Print BRIDGE's per-port counters and drop reasons."""
    _name(bridge, "bridge")
    with ctl.client() as c:
        ports = c.ports(bridge)
    ctl.emit(ports, lambda d: render_dump_ports(bridge, d))


@cli.command("capture")
@click.argument("port")
@click.option("-w", "write", metavar="FILE|-", help="write pcap to FILE, or to stdout with -")
@click.option("-c", "count", type=click.IntRange(min=1), help="stop after COUNT frames")
@click.option("--direction", type=click.Choice(["in", "out", "both"]), default="both",
              show_default=True, help="frames the port receives, sends, or both")
@click.pass_obj
def capture(ctl: Ctl, port, write, count, direction):
    """Capture the frames PORT receives and sends (any port type, patch too).

    \b
    ovslite-ctl capture patch-a                  one line per frame
    ovslite-ctl capture patch-a -w - | tcpdump -nr -
    """
    _name(port, "port")
    client = Client(ctl.socket, None)  # a capture waits for frames as long as it takes
    with client:
        run_capture(client, port, write, count, direction)


@cli.command("version")
@click.pass_obj
def version(ctl: Ctl):
    """Print the versions of ovslite-ctl and of the running daemon."""
    with ctl.client() as c:
        v = c.version()
    data = {"client": __version__, "daemon": v.get("version", ""), "protocol": v.get("protocol", 0)}
    ctl.emit(data, lambda d: [f"{PROG} {d['client']}",
                              f"ovslited {d['daemon']} (protocol {d['protocol']})"])


def main(argv=None) -> None:
    cli.main(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()

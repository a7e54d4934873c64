"""ovslite-ctl: configure and inspect ovslited, in the style of ovs-vsctl.

    ovslite-ctl [--socket PATH] [--format text|json] [--timeout S] COMMAND ARGS...

Each invocation opens one connection to the daemon's control socket (see
docs/control-protocol.md) and runs one command. Names are checked locally
before anything is sent, so an invalid name never reaches the daemon.

Errors are exactly one line on stderr, "ovslite-ctl: ...", never a traceback.
Exit status: 0 success; 1 the daemon refused the request, could not be
reached or did not answer in time; 2 usage error (bad option, argument, name
or key=value). `--format json` affects the listing commands and `monitor`.

Commands live here, in fdb.py (fdb-*), flows.py (dump-flows), monitor.py, capture.py
and trace.py; common.py has the shared context and argument checks.
"""

from __future__ import annotations

import os
import sys

import click

from ovslite import __version__

from . import fdb, flows, mirrors, monitor, stp
from .capture import run_capture
from .client import DEFAULT_SOCKET, Client, ControlError
from .common import PROG, Ctl, bridge_settings, kv, port_options, port_settings
from .common import check_name as _name
from .common import parse_pairs as _options
from .trace import run_trace

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


# -- formatting -----------------------------------------------------------------


def _state(port: dict) -> str:
    if port["up"]:
        return f"up, blocked ({port['blocked']})" if port.get("blocked") else "up"
    return f"down ({port['reason']})" if port["reason"] else "down"


def render_show(data: dict) -> list[str]:
    lines = []
    for br in data["bridges"]:
        lines.append(f"Bridge {br['name']}")
        lines += [f"    {k}: {v}" for k, v in br.get("settings", {}).items()]
        for port in sorted(br["ports"], key=lambda p: p["name"]):
            lines += [f"    Port {port['name']}", f"        type: {port['type']}",
                      f"        state: {_state(port)}"]
            if port["options"]:
                lines.append(f"        options: {kv(port['options'])}")
            if port.get("tunnel"):
                lines.append(f"        tunnel: {kv(port['tunnel'])}")
            lines += [f"        {k}: {v}" for k, v in port.get("settings", {}).items()]
        for m in br.get("mirrors", []):
            lines += mirrors.render_mirror(m, "    ")
    if data.get("version"):
        lines.append(f'ovslite_version: "{data["version"]}"')
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
        for r in p.get("remotes", ()):  # a tunnel port with several remotes
            lines.append(f"{pad}remote {r['remote']}: rx pkts={r['rx_packets']}, "
                         f"bytes={r['rx_bytes']}; tx pkts={r['tx_packets']}, bytes={r['tx_bytes']}")
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


@cli.command("set-br")
@click.argument("bridge")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_obj
def set_br(ctl: Ctl, bridge, settings):
    """Change BRIDGE's settings; KEY= (empty) resets one to its default.

    \b
    mac-aging-time=SECONDS   forget a MAC not seen for this long (300)
    mac-table-size=N         at most N learned MAC entries (8192; static ones aside)
    forward-bpdu=on|off      forward 01:80:c2:00:00:0x frames (STP, LACP...) (off;
                             with stp or rstp on, BPDUs are never forwarded)
    stp=on|off               IEEE 802.1D spanning tree (off)
    rstp=on|off              IEEE 802.1w rapid spanning tree (off; not with stp)
    stp-priority=N           0-65535 (32768); rstp-priority 0-61440 in 4096s
    stp-hello-time=S         1-10 (2); rstp-hello-time 1-2 (2)
    stp-max-age=S            6-40 (20); rstp-max-age likewise
    stp-forward-delay=S      4-30 (15); rstp-forward-delay likewise
    rstp-transmit-hold-count=N  1-10 (6)
    """
    _name(bridge, "bridge")
    changes = bridge_settings(settings)
    with ctl.client() as c:
        c.set_bridge(bridge, changes)


@cli.command("add-port")
@click.argument("bridge")
@click.argument("iface")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE...]")
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
def add_port(ctl: Ctl, bridge, iface, settings, type_, option, may_exist, **shortcuts):
    """Add interface IFACE to BRIDGE as a port, with port settings (see set-port).

    \b
    Types: system (an existing interface), internal (created by ovslited),
    tap (ovslited opens /dev/net/tun), patch (a cable to another bridge).
    e.g. ovslite-ctl add-port br0 veth1 tag=10 learning=off
    """
    _name(bridge, "bridge")
    _name(iface, "port")
    changes = port_settings(settings, new_port=True)
    options = _options(option)
    for key, value in shortcuts.items():
        if value is not None:
            if key in options:
                raise click.UsageError(f"option {key!r} given more than once")
            options[key] = str(value)
    port_options(options)
    with ctl.client() as c:
        c.add_port(bridge, iface, type_, options, may_exist or ctl.may_exist, changes)


@cli.command("set-port")
@click.argument("port")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_obj
def set_port(ctl: Ctl, port, settings):
    """Change PORT's switching settings; KEY= (empty) resets one to its default.

    \b
    tag=VLAN                 access VLAN (or the native VLAN of a trunk)
    trunks=10,20-30          VLANs a trunk carries (default: all)
    vlan-mode=MODE           access, trunk, native-tagged, native-untagged
    learning=on|off          learn source MACs (on)
    flood=on|off             receive unknown unicast (on)
    mcast-flood=on|off       receive multicast (on)
    bcast-flood=on|off       receive broadcast (on)
    isolated=on|off          no traffic to or from other isolated ports (off)
    admin=up|down            administrative state (up)
    mtu=N                    drop larger frames on output; sets the device MTU
    storm-control=N          at most N flooded frames per second in
    split-horizon=on|off     no frames between ports that have it on (on for tunnels)
    stp-enable=on|off        take part in stp/rstp (on; off: forward regardless)
    stp-port-priority=N      0-255 (128); rstp-port-priority 0-240 in 16s
    stp-path-cost=N          1-65535 (from the speed); rstp-path-cost 1-200000000
    rstp-admin-edge=on|off   an edge port: forwards at once (off)
    rstp-auto-edge=on|off    an edge port if it hears no BPDU (on)
    """
    _name(port, "port")
    changes = port_settings(settings)
    with ctl.client() as c:
        c.set_port(port, changes)


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
    """Print every bridge with its ports, their type and state, and its mirrors."""
    with ctl.client() as c:
        data = {"bridges": c.bridges(), "version": c.version().get("version", "")}
        tunnels = {p["name"]: p["info"] for p in c.ports() if "inner_mtu" in p["info"]}
        for m in mirrors.of_daemon(c):
            br = next((b for b in data["bridges"] if b["name"] == m["bridge"]), None)
            if br is not None:
                br.setdefault("mirrors", []).append(m)
    for port in (p for br in data["bridges"] for p in br["ports"] if p["name"] in tunnels):
        port["tunnel"] = tunnels[port["name"]]  # remote(s), key, inner MTU: facts, not options
    ctl.emit(data, render_show)


@cli.command("dump-ports")
@click.argument("bridge")
@click.pass_obj
def dump_ports(ctl: Ctl, bridge):
    """Print BRIDGE's per-port counters and drop reasons; per remote for tunnel ports
    with several remotes (frames and inner bytes)."""
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
@click.option("--outer", is_flag=True,
              help="tunnel port: its encapsulated packets as on the underlay (outer IP/UDP or IP/GRE)")
@click.pass_obj
def capture(ctl: Ctl, port, write, count, direction, outer):
    """Capture the frames PORT receives and sends (any port type, patch too).

    \b
    ovslite-ctl capture patch-a                  one line per frame
    ovslite-ctl capture patch-a -w - | tcpdump -nr -
    ovslite-ctl capture vx0 --outer -w - | tcpdump -nr -    the tunnel's packets
    """
    _name(port, "port")
    client = Client(ctl.socket, None)  # a capture waits for frames as long as it takes
    with client:
        run_capture(client, port, write, count, direction, outer)


@cli.command("version")
@click.pass_obj
def version(ctl: Ctl):
    """Print the versions of ovslite-ctl and of the running daemon."""
    with ctl.client() as c:
        v = c.version()
    data = {"client": __version__, "daemon": v.get("version", ""), "protocol": v.get("protocol", 0)}
    ctl.emit(data, lambda d: [f"{PROG} {d['client']}",
                              f"ovslited {d['daemon']} (protocol {d['protocol']})"])


for _command in (*fdb.COMMANDS, *flows.COMMANDS, *mirrors.COMMANDS, *stp.COMMANDS,
                 monitor.monitor):
    cli.add_command(_command)


@cli.command("trace")
@click.argument("bridge")
@click.argument("fields", nargs=-1, metavar="in_port=P dl_src=MAC dl_dst=MAC [dl_vlan=N] [dl_type=T]")
@click.option("--generate", is_flag=True, help="also inject the frame: learned, counted and sent")
@click.pass_obj
def trace(ctl: Ctl, bridge, fields, generate):
    """Show what BRIDGE would do with a frame received on in_port, changing nothing.

    \b
    ovslite-ctl trace br0 in_port=p1 dl_src=02:00:00:00:00:01 dl_dst=ff:ff:ff:ff:ff:ff
    ovslite-ctl trace br0 in_port=p1,dl_src=...,dl_dst=...,dl_vlan=10 --generate
    Fields may be given as separate words or comma-separated; see docs/trace.md.
    """
    _name(bridge, "bridge")
    run_trace(ctl, bridge, fields, generate)


def main(argv=None) -> None:
    cli.main(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()

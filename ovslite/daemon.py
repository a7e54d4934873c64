"""ovslited: the daemon. Loads the database, opens ports, serves the control socket.

Stopping (SIGTERM, SIGINT): without systemd every port is closed and the
devices the daemon created go with it. Under systemd the ports are handed
over instead (ovslite.handover): their fds stay in the fd store, so a restart
finds the devices and the frames queued meanwhile, and `systemctl stop`, which
empties the store, removes them. SIGUSR2: restart in place (exec), handing
the ports over the same way, with or without systemd.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import os
import signal
import sys

import structlog

from . import __version__, handover, heap, sdnotify
from . import log as logmod
from .control.server import ControlServer, ControlSocketError
from .datapath import Datapath
from .db import ConfigDB, DatabaseError
from .linkmon import LinkMonitor
from .switch import Switch

DEFAULT_DB = "/var/lib/ovslite/conf.db"
DEFAULT_SOCKET = "/run/ovslite/ovslite.sock"
TIMER_INTERVAL = 1.0
#: members of this group may use the control socket (mode 0660), if it exists
SOCKET_GROUP = "ovslite"

log = structlog.get_logger("ovslite.daemon")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ovslited", description="ovslite userspace switch daemon")
    p.add_argument("--db", default=DEFAULT_DB, help=f"configuration database (default {DEFAULT_DB})")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})")
    p.add_argument("--log-format", choices=("console", "json"), default=None,
                   help="console on a terminal, json otherwise")
    p.add_argument("--log-level", choices=logmod.LEVELS, default="info")
    p.add_argument("--version", action="version", version=f"ovslited {__version__}")
    return p.parse_args(argv)


class Daemon:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.stopping: asyncio.Event | None = None
        self._status_pending = False
        #: SIGUSR2 came: exec ourselves once the loop is done
        self.restart_requested = False
        #: the fds to pass on by exec ({fd name: fds}), once run() returned
        self.exec_fds: dict[str, list[int]] | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        inherited = handover.Handover.from_environment()  # fds 3..: before anything else
        datapath = Datapath(loop)
        switch = Switch(ConfigDB(self.args.db), datapath)
        switch.handover = inherited
        server = ControlServer(switch, self.args.socket, loop)
        server.open()  # refuse early if another daemon owns the socket
        links = LinkMonitor(loop, switch.link_event, switch.routes_changed)  # before ports open: no event is missed
        _socket_group(self.args.socket)
        # The socket is ours, so no other daemon writes this database: what a kill
        # left of a write is garbage.
        leftovers = switch.db.remove_leftovers()
        if leftovers:
            log.info("removed temporary files of an interrupted write", files=leftovers)
        try:
            switch.load()
        except DatabaseError:
            links.close()
            server.close()
            raise  # handed-over fds stay in the fd store for the next try
        inherited.close_unclaimed()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload, switch)
        loop.add_signal_handler(signal.SIGUSR2, self._restart_in_place)
        timers = loop.create_task(self._timers(switch, datapath))
        tasks = [timers]
        interval = sdnotify.watchdog_interval()
        if interval is not None:
            tasks.append(loop.create_task(self._watchdog(interval)))
        log.info("started", db=self.args.db, socket=self.args.socket,
                 bridges=len(switch.bridges), ports=len(switch.ports),
                 reattached=inherited.claimed)
        sdnotify.ready(_status(switch))

        def on_change(event: str, **_) -> None:
            self._status_soon(switch)

        switch.listeners.append(on_change)
        try:
            await self.stopping.wait()
        finally:
            if self.restart_requested:
                sdnotify.reloading("restarting in place")
            else:
                sdnotify.stopping("stopping")
            if self.restart_requested or inherited.store:
                # First of all: from here on the rings are not read, and a
                # ring holds 25 ms of traffic at 10,000 frames/s.
                named = handover.prepare(list(switch.ports.values()), inherited, datapath)
                log.info("ports handed over", ports=len(named),
                         fds=sum(len(fds) for fds in named.values()),
                         to="exec" if self.restart_requested else "the systemd fd store")
            switch.listeners.remove(on_change)
            for task in tasks:
                task.cancel()
            server.close()
            links.close()
            if self.restart_requested:
                self.exec_fds = named  # main() execs once the loop is closed
            else:
                switch.shutdown()  # closes our copies; with a hand-over, stored fds stay
            datapath.close()
            log.info("stopped")
        return 0

    def _restart_in_place(self) -> None:
        """SIGUSR2: hand the ports over to a fresh exec of ourselves."""
        log.info("restart in place requested")
        self.restart_requested = True
        self.stopping.set()

    async def _timers(self, switch: Switch, datapath: Datapath) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL)
            switch.run_timers(datapath.clock())

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop hangs, systemd restarts us."""
        while True:
            sdnotify.watchdog()
            await asyncio.sleep(interval)

    def _status_soon(self, switch: Switch) -> None:
        """Update STATUS= once per loop pass, however many changes a command made."""
        if not self._status_pending:
            self._status_pending = True
            asyncio.get_running_loop().call_soon(self._send_status, switch)

    def _send_status(self, switch: Switch) -> None:
        self._status_pending = False
        sdnotify.status(_status(switch))

    def _reload(self, switch: Switch) -> None:
        """SIGHUP: re-read the database and reconcile; a bad file changes nothing."""
        sdnotify.reloading("reloading " + self.args.db)
        try:
            switch.reload()
            log.info("reloaded", db=self.args.db, bridges=len(switch.bridges),
                     ports=len(switch.ports))
        except DatabaseError as exc:
            log.error("reload refused, keeping the running configuration", error=str(exc))
            sdnotify.ready(_status(switch) + "; reload refused: " + str(exc))
            return
        except Exception:
            log.exception("reload failed")
        sdnotify.ready(_status(switch))  # the reload is over either way


def _status(switch: Switch) -> str:
    """STATUS= text: "2 bridges, 5 ports (1 down)"."""
    down = sum(1 for port in switch.ports.values() if not port.up)
    text = f"{len(switch.bridges)} bridges, {len(switch.ports)} ports"
    return text + (f" ({down} down)" if down else "")


def _socket_group(path: str) -> None:
    """Give the control socket to group `ovslite`, if it exists (mode stays 0660)."""
    try:
        gid = grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("cannot give the control socket to its group", group=SOCKET_GROUP,
                    path=path, error=exc.strerror)


def main(argv=None) -> int:
    args = parse_args(argv)
    logmod.configure(args.log_format, args.log_level)
    heap.tune()
    daemon = Daemon(args)
    try:
        import uvloop

        rc = uvloop.run(daemon.run())
        if daemon.exec_fds is not None:
            handover.restart_in_place(daemon.exec_fds)  # returns only if exec failed
        return rc
    except (DatabaseError, ControlSocketError) as exc:
        print(f"ovslited: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"ovslited: {exc.strerror}: {exc.filename or ''} (ovslited needs root)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if daemon.exec_fds is None:
            raise
        print(f"ovslited: cannot restart in place: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

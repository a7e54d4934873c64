"""ovslited: the daemon. Loads the database, opens ports, serves the control socket."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog

from . import __version__
from . import log as logmod
from .control.server import ControlServer, ControlSocketError
from .datapath import Datapath
from .db import ConfigDB, DatabaseError
from .switch import Switch

DEFAULT_DB = "/var/lib/ovslite/conf.db"
DEFAULT_SOCKET = "/run/ovslite/ovslite.sock"
TIMER_INTERVAL = 1.0

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

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        datapath = Datapath(loop)
        switch = Switch(ConfigDB(self.args.db), datapath)
        server = ControlServer(switch, self.args.socket, loop)
        server.open()  # refuse early if another daemon owns the socket
        try:
            switch.load()
        except DatabaseError:
            server.close()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        timers = loop.create_task(self._timers(switch, datapath))
        log.info("started", db=self.args.db, socket=self.args.socket,
                 bridges=len(switch.bridges), ports=len(switch.ports))
        try:
            await self.stopping.wait()
        finally:
            timers.cancel()
            server.close()
            switch.shutdown()
            datapath.close()
            log.info("stopped")
        return 0

    async def _timers(self, switch: Switch, datapath: Datapath) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL)
            switch.run_timers(datapath.clock())


def main(argv=None) -> int:
    args = parse_args(argv)
    logmod.configure(args.log_format, args.log_level)
    try:
        import uvloop

        return uvloop.run(Daemon(args).run())
    except (DatabaseError, ControlSocketError) as exc:
        print(f"ovslited: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"ovslited: {exc.strerror}: {exc.filename or ''} (ovslited needs root)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

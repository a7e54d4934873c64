"""The switch under test (c, d, e and the scaling rows): a private ovslited.

Design: the whole configuration (bridges, their ports and bridge config
such as mac-table-size) is written as the daemon's JSON database before it
starts, so one start-up builds any topology in one step, with no dependence
on the CLI's option syntax; this is the documented database format
(ovslite/db.py). Each case gets its own temporary directory holding the
database, the control socket and the daemon's JSON log.

Readiness is the daemon's own "started" log record (emitted after the
database has been loaded and every port opened), followed by the caller's
ping through the switch. The FDB is read over the control socket with
ovslite_ctl's client library; if that is unavailable the count is reported
as unknown rather than guessed. `netns`: the daemon runs inside that
namespace (the overlay section's hosts); its socket is in the work directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .resources import Resources, stop_group, wait_for


@dataclass
class PortSpec:
    name: str
    type: str = "system"
    options: dict[str, str] = field(default_factory=dict)


def daemon_cmd() -> list[str]:
    script = Path(sys.executable).parent / "ovslited"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ovslite"]


class Ovslite:
    kind = "ovslite"

    def __init__(self, res: Resources, workdir: str, netns: str | None = None):
        self.res = res
        self.inside = ["ip", "netns", "exec", netns] if netns else []
        self.dir = workdir
        self.db = os.path.join(workdir, "conf.db")
        self.socket = os.path.join(workdir, "ovslite.sock")
        self.log = os.path.join(workdir, "ovslited.log")
        self.proc = None
        self.bridges: list[str] = []
        self.notes: list[str] = []

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def write_db(self, bridges: dict[str, list[PortSpec]], config: dict | None = None) -> None:
        doc = {"format": 1, "bridges": {}}
        for br, ports in bridges.items():
            # Like add-br: every bridge has an internal port of its own name.
            entries = {br: {"type": "internal", "options": {}}}
            for p in ports:
                entries[p.name] = {"type": p.type, "options": dict(p.options)}
            doc["bridges"][br] = {"config": dict(config or {}), "ports": entries}
            self.res.links.append(br)  # the internal port's TAP, in case the daemon leaves it
        with open(self.db, "w") as f:
            json.dump(doc, f, indent=2)
        self.bridges = list(bridges)

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "wb") as log:
            self.proc = self.res.popen(
                [*self.inside, *daemon_cmd(), "--db", self.db, "--socket", self.socket, "--log-format", "json"],
                stdout=log, stderr=log)
        self.res.on_close("ovslited", self.stop)

        def started() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ovslited exited with {self.proc.returncode}: {self.log_tail()}")
            return any(rec.get("event") == "started" for rec in self.log_records())

        wait_for(started, timeout, "ovslited to start")
        errors = [r for r in self.log_records() if r.get("level") == "error"]
        if errors:
            raise RuntimeError(f"ovslited reported errors at start-up: {errors[:3]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        # SIGTERM lets the daemon close its sockets and remove its TAPs itself.
        stop_group(self.proc, signal.SIGTERM, timeout=10)
        if self.proc in self.res.procs:
            self.res.procs.remove(self.proc)

    def log_records(self) -> list[dict]:
        out = []
        try:
            with open(self.log, errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        out.append(rec)
        except OSError:
            pass
        return out

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def _client(self):
        from ovslite_ctl.client import Client  # the CLI's library; optional for the bench

        return Client(self.socket, timeout=10)

    def fdb(self, bridge: str) -> list[dict] | None:
        """`bridge`'s live MAC table entries, or None if it cannot be read."""
        try:
            with self._client() as c:
                return c.fdb(bridge)
        except Exception:
            return None

    def drops(self) -> dict[str, int]:
        """Drop counters as {"port (type) reason": count}, for the case's notes."""
        total: dict[str, int] = {}
        try:
            with self._client() as c:
                for port in c.ports():
                    for reason, n in port.get("stats", {}).get("drops", {}).items():
                        total[f"{port['name']} ({port['type']}) {reason}"] = int(n)
        except Exception:
            return {}
        return total


def start(res: Resources, bridges: dict[str, list[PortSpec]], config: dict | None = None,
          role: str = "ovslite", netns: str | None = None) -> Ovslite:
    sw = Ovslite(res, res.tempdir(role), netns)
    sw.write_db(bridges, config)
    sw.start()
    return sw

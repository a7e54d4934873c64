"""ovslited under control-socket load (issue #12): at the fd limit it neither spins nor
floods its log and goes on serving, and abandoned dumps leave no memory behind.

The daemon is a real process (integration.daemon); its fd limit is lowered with
prlimit(1) once it runs. CPU time and RSS are the kernel's figures, compared with
bounds an order of magnitude away from both the fixed and the broken behaviour
(behaviour, not speed: the figures themselves are in integration/bench/ctlload.py).
"""

from __future__ import annotations

import shutil
import time

import pytest

from ovslite.control.messages import Cmd

from .bench.ctlload import (
    PAUSED_EVENT,
    RESUMED_EVENT,
    Conn,
    abandon_dumps,
    add_patch_ports,
    cpu_seconds,
    events,
    limit_fds,
    open_idle,
    rss_mib,
)
from .netns import why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is missing"),
]

NOFILE = 256


def test_fd_limit_pauses_accepting_and_keeps_serving(daemon):
    old = Conn(daemon.socket)
    limit_fds(daemon.proc.pid, NOFILE)
    # More than the daemon has fds for, plus what its listen backlog holds.
    idle = open_idle(daemon.socket, NOFILE + 100)
    try:
        assert len(idle) > NOFILE - 40, f"only {len(idle)} clients could connect"
        time.sleep(0.5)
        # Spinning on accept() took a whole CPU; waiting costs next to nothing.
        cpu = cpu_seconds(daemon.proc.pid, 3.0)
        assert cpu < 0.5, f"ovslited used {cpu:.2f} s of CPU in 3 s with {len(idle)} idle clients"
        assert old.ask(Cmd.GET_VERSION)[0].kind == "message"  # a connected client is served
        # Once, however many retries (one a second) found no fd.
        assert events(daemon, PAUSED_EVENT) == 1, daemon.stderr()[-3000:]
        assert daemon.stderr().count("accept failed") == 0
    finally:
        for s in idle:
            s.close()
    new = Conn(daemon.socket)  # behind whatever the backlog still held
    assert new.ask(Cmd.GET_VERSION)[0].kind == "message"
    assert events(daemon, RESUMED_EVENT) == 1
    assert daemon.ctl("list-br").returncode == 0


def test_abandoned_dumps_leave_no_memory_behind(daemon):
    """100 unread GET_PORT dumps of 1,200 ports took RSS from 57 to 178 MB, 171 MB of
    it still there once the clients had gone."""
    br = f"cl{daemon.proc.pid % 0xFFFF:04x}"
    daemon.ctl("add-br", br)
    conn = Conn(daemon.socket)
    try:
        add_patch_ports(conn, br, 1000)
        time.sleep(1)
        start = rss_mib(daemon.proc.pid)
        clients = abandon_dumps(daemon.socket, 100)
        time.sleep(3)
        held = rss_mib(daemon.proc.pid) - start
        for s in clients:
            s.close()
        time.sleep(3)  # a trim follows a second after the dumps end
        left = rss_mib(daemon.proc.pid) - start
        assert conn.ask(Cmd.GET_VERSION)[0].kind == "message"
    finally:
        conn.close()
        daemon.ctl("del-br", br, check=False)
    # Measured here: +26.6 MiB held before the fix, +2.2 MiB after.
    assert held < 10, f"100 unread dumps of 1,000 ports hold {held:.0f} MiB"
    assert left < 10, f"{left:.0f} MiB stayed after the clients left"

"""The daemon's life: restart with its database, refusals at start, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from .daemon import log_lines_removed
from .netns import why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

EXIT_TIMEOUT = 15


def wait_exit(d) -> int:
    try:
        return d.proc.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{d.label} still running {EXIT_TIMEOUT}s after start; it should have refused")


def one_line_message(d) -> str:
    """The daemon's stderr, less JSON log records, must be exactly one line."""
    err = d.stderr()
    assert "Traceback" not in err, f"{d.label} printed a traceback:\n{err}"
    lines = log_lines_removed(err)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    return lines[0]


def test_restart_restores_bridge_ports_and_forwarding(daemon, net):
    br = net.name("br")
    h1, h2 = net.add_host("h1"), net.add_host("h2")
    daemon.ctl("add-br", br)
    daemon.ctl("add-port", br, h1.port)
    daemon.ctl("add-port", br, h2.port)
    h1.ping(h2)

    daemon.restart()

    show = daemon.ctl("show").stdout
    for name in (br, h1.port, h2.port):
        assert name in show, f"{name} missing from `show` after restart:\n{show}"
    assert daemon.ctl("list-br").stdout.split() == [br]
    ports = daemon.ctl("list-ports", br).stdout.split()
    assert {h1.port, h2.port} <= set(ports), f"list-ports after restart: {ports}"
    states = {p["name"]: p["up"] for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]}
    assert states.get(h1.port) and states.get(h2.port), f"ports not up after restart: {states}"
    h1.ping(h2)
    h2.ping(h1)


def test_second_daemon_on_same_socket_refused(daemon, make_daemon, net):
    br, br2 = net.name("br"), net.name("br2")
    daemon.ctl("add-br", br)
    second = make_daemon("second", start=False, sock=daemon.socket)
    second.spawn()
    rc = wait_exit(second)
    assert rc != 0, "a second daemon on the same socket exited 0"
    msg = one_line_message(second)
    print(f"second daemon: exit {rc}: {msg}")

    assert daemon.running, f"first daemon died:\n{daemon.stderr()}"
    assert os.path.exists(daemon.socket), "the second daemon removed the first one's socket"
    assert daemon.ctl("list-br").stdout.split() == [br]
    daemon.ctl("add-br", br2)
    assert sorted(daemon.ctl("list-br").stdout.split()) == sorted([br, br2])


def _db(config: str, ports: str) -> bytes:
    return (b'{"format": 1, "bridges": {"br0": {"config": %s, "ports": %s}}}\n'
            % (config.encode(), ports.encode()))


CORRUPT = {
    "not-json": b'{"format": 1, "bridges": {"br0": {"ports": {\n',
    "wrong-shape": b'{"format": 1, "bridges": {"br0": {"ports": ["eth0"]}}}\n',
    "binary": bytes(range(256)),
    # Hand-edited: each of these was a traceback, or loaded although a command refuses it.
    "unknown-type": _db("{}", '{"p1": {"type": "nosuch"}}'),
    "netns_pid-null": _db("{}", '{"br0": {"type": "internal", "options": {"netns_pid": null}}}'),
    "static-port-list": _db('{"static-macs": [{"mac": "02:00:00:00:00:01", "vlan": 0, '
                            '"port": ["p1"]}]}', '{"p1": {"type": "patch", '
                            '"options": {"peer": "p2"}}}'),
    "mtu-1e400": _db("{}", '{"p1": {"type": "patch", "options": {"peer": "p2"}, '
                     '"settings": {"mtu": 1e400}}}'),
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "aging-NaN": _db('{"mac-aging-time": NaN}', "{}"),
    "aging-Infinity": _db('{"mac-aging-time": Infinity}', "{}"),
    "peer-5": _db("{}", '{"p1": {"type": "patch", "options": {"peer": 5}}}'),
    "setting-bool": _db('{"mac-table-size": true}', "{}"),
    "name-percent": _db("{}", '{"tap%d": {"type": "tap"}}'),
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_database_refused_and_left_alone(make_daemon, tmp_path, content):
    db = tmp_path / "corrupt.db"
    db.write_bytes(content)
    os.utime(db, (1_000_000_000, 1_000_000_000))
    before = set(os.listdir(tmp_path))
    d = make_daemon("corrupt", start=False, db=db)
    d.spawn()
    rc = wait_exit(d)
    assert rc != 0, "the daemon accepted a corrupt database"
    msg = one_line_message(d)
    print(f"corrupt database: exit {rc}: {msg}")
    assert str(db) in msg, f"the message does not name the file {db}: {msg!r}"
    assert db.read_bytes() == content, "the corrupt database was rewritten"
    assert db.stat().st_mtime == 1_000_000_000, "the corrupt database was touched"
    assert set(os.listdir(tmp_path)) - before <= {"corrupt"}, "stray files next to the database"
    assert not os.path.exists(d.socket), "a refused daemon left its socket file behind"


def test_sigterm_exits_zero_and_removes_socket(daemon, net):
    br = net.name("br")
    h1 = net.add_host("h1")
    daemon.ctl("add-br", br)
    daemon.ctl("add-port", br, h1.port)
    assert os.path.exists(daemon.socket)
    rc = daemon.stop()
    assert rc == 0, f"exit status {rc} after SIGTERM"
    assert not os.path.exists(daemon.socket), "socket file left behind after SIGTERM"
    assert "Traceback" not in daemon.stderr()
    assert not os.path.exists(f"/sys/class/net/{br}"), "the bridge's internal port outlived the daemon"
    assert os.path.exists(f"/sys/class/net/{h1.port}"), "the daemon deleted a system port's interface"


def test_start_with_a_missing_interface_keeps_it_configured_and_down(daemon, net):
    br = net.name("br")
    h1, h2, h3 = net.add_host("h1"), net.add_host("h2"), net.add_host("h3")
    daemon.ctl("add-br", br)
    for h in (h1, h2, h3):
        daemon.ctl("add-port", br, h.port)
    assert daemon.stop() == 0
    net.links.remove(h3.port)
    subprocess.run(["ip", "link", "del", h3.port], check=True, timeout=10)

    daemon.start()
    ports = {p["name"]: p for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]}
    assert h3.port in ports, f"the missing interface's port was dropped: {sorted(ports)}"
    assert not ports[h3.port]["up"] and ports[h3.port]["reason"], ports[h3.port]
    print(f"{h3.port}: down ({ports[h3.port]['reason']})")
    assert ports[h1.port]["up"] and ports[h2.port]["up"]
    h1.ping(h2)
    daemon.ctl("del-port", br, h3.port)
    assert h3.port not in daemon.ctl("list-ports", br).stdout.split()


def test_leftover_temp_files_are_removed_at_start(make_daemon, tmp_path):
    """A kill between mkstemp and rename leaves .conf.db.XXXXXXXX behind; before,
    50 kills left 4 of them for good."""
    d = make_daemon("leftovers", start=False)
    d.db.write_bytes(b'{"format": 1, "bridges": {}}\n')
    leftovers = [".conf.db.k1ll3d_x", ".conf.db.abcdefgh"]
    others = [".conf.db.toolongname", "conf.db.abcdefgh", ".other.db.abcdefgh"]
    for name in leftovers + others:
        (d.db.parent / name).write_bytes(b'{"format": 1, "bri')
    d.start()
    assert d.ctl("list-br").stdout == ""
    names = set(os.listdir(d.db.parent))
    assert not names & set(leftovers), f"leftovers still there: {names & set(leftovers)}"
    assert set(others) <= names, "a file that is not ours was removed"


def test_sighup_with_a_bad_database_keeps_the_running_configuration(daemon, net):
    br = net.name("br")
    daemon.ctl("add-br", br)
    good = daemon.db.read_bytes()
    bad = good.replace(b'"options": {}', b'"options": {"netns_pid": null}', 1)
    assert bad != good
    daemon.db.write_bytes(bad)
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert daemon.running, f"the daemon died on SIGHUP:\n{daemon.stderr()}"
    assert daemon.ctl("list-br").stdout.split() == [br]
    assert daemon.db.read_bytes() == bad, "a refused reload touched the file"
    refused = [r for r in daemon.errors_logged() if "reload refused" in r.get("event", "")]
    assert refused and "netns_pid" in refused[-1]["error"], daemon.stderr()
    daemon.db.write_bytes(good)
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert daemon.ctl("list-br").stdout.split() == [br]

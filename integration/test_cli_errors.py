"""Bad ovslite-ctl input against a running daemon: one line on stderr, a
non-zero exit, no traceback, and the configuration left as it was."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from .daemon import Daemon
from .netns import Host, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


@dataclass
class Setup:
    daemon: Daemon
    br: str
    h1: Host
    missing: str  # an interface name that does not exist

    def snapshot(self) -> tuple:
        d = self.daemon
        db = d.db.read_bytes() if d.db.exists() else None
        return d.ctl("show", fmt="json").stdout, db


@pytest.fixture
def setup(daemon, net) -> Setup:
    br = net.name("br")
    h1 = net.add_host("h1")
    daemon.ctl("add-br", br)
    daemon.ctl("add-port", br, h1.port)
    return Setup(daemon, br, h1, net.name("zz"))


BAD = {
    "add-port-nonexistent-iface": lambda s: ["add-port", s.br, s.missing],
    "add-port-unknown-bridge": lambda s: ["add-port", s.missing, s.h1.port],
    "add-port-twice": lambda s: ["add-port", s.br, s.h1.port],
    "del-port-unknown": lambda s: ["del-port", s.br, s.missing],
    "del-port-unknown-no-bridge": lambda s: ["del-port", s.missing],
    "del-port-wrong-bridge": lambda s: ["del-port", s.missing, s.h1.port],
    "add-br-16-bytes": lambda s: ["add-br", "b" * 16],
    "add-br-existing": lambda s: ["add-br", s.br],
    "add-br-named-like-a-port": lambda s: ["add-br", s.h1.port],
    "del-port-local-port": lambda s: ["del-port", s.br, s.br],
    "del-br-unknown": lambda s: ["del-br", s.missing],
    "list-ports-unknown": lambda s: ["list-ports", s.missing],
}


@pytest.mark.parametrize("make_args", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_refused_cleanly(setup, make_args):
    args = make_args(setup)
    before = setup.snapshot()
    proc = setup.daemon.ctl(*args, check=False)
    cmd = "ovslite-ctl " + " ".join(args)
    assert proc.returncode != 0, f"{cmd} succeeded: {proc.stdout!r}"
    assert "Traceback" not in proc.stderr + proc.stdout, f"{cmd}:\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), (
        f"{cmd}: expected exactly one line on stderr, got {proc.stderr!r}")
    print(f"{cmd} -> exit {proc.returncode}: {lines[0]}")
    assert setup.snapshot() == before, f"{cmd} changed the configuration"
    assert setup.daemon.running


@pytest.mark.parametrize("args", [
    ["--may-exist", "add-br", "{br}"],
    ["--may-exist", "add-port", "{br}", "{port}"],
    ["--if-exists", "del-port", "{br}", "{missing}"],
    ["--if-exists", "del-br", "{missing}"],
], ids=["add-br", "add-port", "del-port", "del-br"])
def test_may_exist_and_if_exists_succeed_without_change(setup, args):
    args = [a.format(br=setup.br, port=setup.h1.port, missing=setup.missing) for a in args]
    before = setup.snapshot()
    proc = setup.daemon.ctl(*args, check=False)
    assert proc.returncode == 0, f"ovslite-ctl {' '.join(args)}: {proc.stderr!r}"
    assert proc.stderr == ""
    assert setup.snapshot() == before


def test_deleting_a_port_with_a_static_mac_leaves_configuration_writable(daemon, net):
    """The issue's sequence through the real CLI: before, every later write failed with
    'internal error ... static-macs: entry names no port of the bridge', and the
    database still listed the deleted port."""
    br, br1, p1, p2 = net.name("br"), net.name("bq"), net.name("p1"), net.name("p2")
    daemon.ctl("add-br", br)
    daemon.ctl("add-port", br, p1, "--type", "patch", "--peer", p2)
    daemon.ctl("fdb-add", br, "02:00:00:00:00:01", p1)
    assert "02:00:00:00:00:01" in daemon.ctl("fdb-show", br).stdout
    daemon.ctl("del-port", p1)
    daemon.ctl("add-br", br1)
    daemon.ctl("set-br", br, "mac-aging-time=60")
    assert sorted(daemon.ctl("list-br").stdout.split()) == sorted([br, br1])
    assert daemon.ctl("list-ports", br).stdout == ""
    assert "02:00:00:00:00:01" not in daemon.ctl("fdb-show", br).stdout
    stored = json.loads(daemon.db.read_text())
    assert p1 not in stored["bridges"][br]["ports"]
    assert stored["bridges"][br]["config"].get("static-macs", []) == []
    daemon.restart()
    assert sorted(daemon.ctl("list-br").stdout.split()) == sorted([br, br1])


def test_a_name_the_kernel_would_rewrite_is_refused_and_nothing_is_made(setup, net):
    """Before: 'add-port BR tap%d --type tap' succeeded, the kernel made tap0 (or the
    next free number) and `show` listed 'tap%d'."""
    before = setup.snapshot()
    links = set(os.listdir("/sys/class/net"))
    stem = net.name("t")
    for args in (["add-port", setup.br, stem + "%d", "--type", "tap"],
                 ["add-br", stem + "%d"],
                 ["add-port", setup.br, stem, "--type", "patch", "--peer", "x" * 16]):
        proc = setup.daemon.ctl(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert set(os.listdir("/sys/class/net")) - links == set()
    assert setup.snapshot() == before

"""sd_notify and sd_listen_fds, against a real AF_UNIX datagram socket standing
in for systemd's notify socket: the exact datagrams and the fds that arrive."""

from __future__ import annotations

import array
import json
import os
import select
import socket
import subprocess
import sys
import uuid

import pytest

from ovslite import sdnotify


class NotifySocket:
    """A bound SOCK_DGRAM socket, as systemd's /run/systemd/notify is."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)
        # systemd reads the sender's credentials: check the kernel attaches them.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, maxfds: int = 300) -> tuple[bytes, list[int], tuple[int, int, int] | None]:
        fdsize = array.array("i").itemsize
        data, ancdata, flags, _ = self.sock.recvmsg(
            4096, socket.CMSG_SPACE(maxfds * fdsize) + socket.CMSG_SPACE(12)
        )
        assert not flags & socket.MSG_CTRUNC
        fds: list[int] = []
        creds = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % fdsize])
                fds.extend(a)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                creds = tuple(array.array("i", payload[:12]))
        return data, fds, creds

    def pending(self) -> bool:
        readable, _, _ = select.select([self.sock], [], [], 0.1)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    ns = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield ns
    ns.close()


def test_ready_with_status(notify_socket):
    assert sdnotify.ready("2 bridges, 5 ports") is True
    data, fds, creds = notify_socket.recv()
    assert data == b"READY=1\nSTATUS=2 bridges, 5 ports\n"
    assert fds == []
    assert creds == (os.getpid(), os.getuid(), os.getgid())


def test_simple_messages(notify_socket):
    sdnotify.ready()
    sdnotify.status("reloading")
    sdnotify.watchdog()
    sdnotify.stopping()
    sdnotify.stopping("bye")
    got = [notify_socket.recv()[0] for _ in range(5)]
    assert got == [
        b"READY=1\n",
        b"STATUS=reloading\n",
        b"WATCHDOG=1\n",
        b"STOPPING=1\n",
        b"STOPPING=1\nSTATUS=bye\n",
    ]


def test_notify_fields_are_upper_cased_and_newlines_flattened(notify_socket):
    sdnotify.notify(status="line one\nline two", errno=5, ready=True)
    assert notify_socket.recv()[0] == b"STATUS=line one line two\nERRNO=5\nREADY=1\n"


def test_reloading_carries_monotonic_time(notify_socket):
    sdnotify.reloading("reloading conf.db")
    data = notify_socket.recv()[0].decode()
    lines = data.splitlines()
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0
    assert lines[2] == "STATUS=reloading conf.db"
    assert data.endswith("\n")


def test_notify_rejects_bad_field_names(notify_socket):
    with pytest.raises(ValueError):
        sdnotify.notify(**{"A=B": 1})
    with pytest.raises(ValueError):
        sdnotify.notify()
    assert not notify_socket.pending()


def test_abstract_namespace_address(monkeypatch):
    name = f"ovslite-test-{uuid.uuid4().hex}"
    ns = NotifySocket("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.enabled()
        assert sdnotify.watchdog() is True
        assert ns.recv()[0] == b"WATCHDOG=1\n"
    finally:
        ns.close()


def test_unset_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.enabled()
    assert sdnotify.ready("x") is False
    assert sdnotify.status("x") is False
    assert sdnotify.watchdog() is False
    assert sdnotify.stopping() is False
    r, w = os.pipe()
    try:
        assert sdnotify.store_fds("port-x", [r]) is False
    finally:
        os.close(r)
        os.close(w)
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.ready() is False


def test_unsupported_address_is_a_no_op(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert not sdnotify.enabled()
    assert sdnotify.ready() is False


def test_send_failure_returns_false(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready("x") is False


def test_store_fds_passes_the_fds(notify_socket, tmp_path):
    r, w = os.pipe()
    f = open(tmp_path / "file", "w+b")  # noqa: SIM115
    try:
        assert sdnotify.store_fds("port-veth0", [r, f.fileno()]) is True
        data, fds, _ = notify_socket.recv()
        assert data == b"FDSTORE=1\nFDNAME=port-veth0\n"
        assert len(fds) == 2
        # The received fds are new descriptors for the same open files.
        for mine, theirs in zip((r, f.fileno()), fds, strict=True):
            assert theirs != mine
            a, b = os.fstat(mine), os.fstat(theirs)
            assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        os.write(w, b"through the store")
        assert os.read(fds[0], 100) == b"through the store"
        os.write(fds[1], b"x")
        f.seek(0)
        assert f.read() == b"x"
        for fd in fds:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)
        f.close()


def test_store_many_fds_is_split_by_scm_max_fd(notify_socket):
    r, w = os.pipe()
    dups = [os.dup(r) for _ in range(sdnotify.SCM_MAX_FD + 7)]
    try:
        assert sdnotify.store_fds("many", dups) is True
        first = notify_socket.recv()
        second = notify_socket.recv()
        assert first[0] == second[0] == b"FDSTORE=1\nFDNAME=many\n"
        assert (len(first[1]), len(second[1])) == (sdnotify.SCM_MAX_FD, 7)
        for fd in first[1] + second[1]:
            os.close(fd)
    finally:
        for fd in dups + [r, w]:
            os.close(fd)


def test_remove_fds(notify_socket):
    sdnotify.remove_fds("port-veth0")
    assert notify_socket.recv()[0] == b"FDSTOREREMOVE=1\nFDNAME=port-veth0\n"


@pytest.mark.parametrize("name", ["", "a:b", "with space", "x" * 256, "é"])
def test_store_fds_rejects_bad_names(notify_socket, name):
    with pytest.raises(ValueError):
        sdnotify.store_fds(name, [0])
    assert not notify_socket.pending()


def test_store_fds_needs_fds(notify_socket):
    with pytest.raises(ValueError):
        sdnotify.store_fds("x", [])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "{pid}"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "junk"}, None),
    ],
)
def test_watchdog_interval(env, expected):
    env = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    assert sdnotify.watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 1.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert sdnotify.watchdog_interval() is None


CHILD = """
import json, os, sys
from ovslite import sdnotify
got = sdnotify.listen_fds(unset_environment=sys.argv[1] == "unset")
first = got and next(iter(got.values()))[0]
print(json.dumps({
    "fds": got,
    "inheritable": [os.get_inheritable(fd) for fds in got.values() for fd in fds],
    "env": sorted(k for k in os.environ if k.startswith("LISTEN_")),
    "data": os.read(first, 100).decode() if first else "",
}))
"""


def run_with_fds(n: int, env: dict, unset: bool = True) -> dict:
    """Exec a child with a pipe's read end at fds 3..3+n-1, as systemd passes fds.

    The child's pid is only known after fork, so "{pid}" in LISTEN_PID is
    filled in by the child itself before anything else runs."""
    r, w = os.pipe()
    os.write(w, b"hello")

    def at_3():
        for fd in range(sdnotify.LISTEN_FDS_START, sdnotify.LISTEN_FDS_START + n):
            os.dup2(r, fd, inheritable=True)

    code = "import os\nif os.environ.get('LISTEN_PID') == '{pid}': os.environ['LISTEN_PID'] = str(os.getpid())\n" + CHILD
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, "unset" if unset else "keep"],
            env={**os.environ, **env}, preexec_fn=at_3, close_fds=False,
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    finally:
        os.close(r)
        os.close(w)
    return json.loads(out)


def test_listen_fds_by_name():
    got = run_with_fds(3, {"LISTEN_PID": "{pid}", "LISTEN_FDS": "3",
                           "LISTEN_FDNAMES": "port-a:port-b:port-a"})
    assert got["fds"] == {"port-a": [3, 5], "port-b": [4]}
    assert got["inheritable"] == [False, False, False]  # made close-on-exec
    assert got["env"] == []  # unset, so children do not inherit them
    assert got["data"] == "hello"  # fd 3 really is what was passed


def test_listen_fds_without_names_and_keeping_env():
    got = run_with_fds(2, {"LISTEN_PID": "{pid}", "LISTEN_FDS": "2"}, unset=False)
    assert got["fds"] == {"unknown": [3, 4]}
    assert got["env"] == ["LISTEN_FDS", "LISTEN_PID"]


def test_listen_fds_for_another_process():
    got = run_with_fds(1, {"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert got["fds"] == {}
    assert got["env"] == []


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_FDS": "2"},
        {"LISTEN_PID": "1", "LISTEN_FDS": "2"},
        {"LISTEN_PID": "{pid}", "LISTEN_FDS": "0"},
        {"LISTEN_PID": "{pid}", "LISTEN_FDS": "junk"},
    ],
)
def test_listen_fds_nothing_for_us(env):
    env = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    assert sdnotify.listen_fds(env=env) == {}

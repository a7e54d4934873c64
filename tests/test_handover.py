"""ovslite.handover and the netdevs' side of it: fd names, the fd store
datagrams, unclaimed fds, the exec hand-over, and which fds each provider
hands over (real TAPs and packet sockets where root allows)."""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from ovslite import handover, sdnotify
from ovslite.netdev import netdev_class

ROOT = os.geteuid() == 0
needs_tun = pytest.mark.skipif(not (ROOT and os.path.exists("/dev/net/tun")),
                               reason="needs root and /dev/net/tun")
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (AF_PACKET, a dummy device)")


# -- names ----------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["br0", "veth0.100", "eth-1_x", "p%1", "é1", "a;b", "x" * 15])
def test_fd_name_round_trip(port):
    name = handover.fd_name(port)
    assert name.startswith("port/")
    assert all(0x20 < ord(c) < 0x7F for c in name) and ":" not in name
    sdnotify._check_fdname(name)  # systemd would take it
    assert handover.port_of(name) == port


def test_fd_name_escapes():
    assert handover.fd_name("br0") == "port/br0"
    assert handover.fd_name("p%1") == "port/p%251"
    assert handover.fd_name("é") == "port/%C3%A9"


@pytest.mark.parametrize("name", ["unknown", "port", "port/", "control", "ports/x"])
def test_names_that_are_not_ports(name):
    assert handover.port_of(name) is None


# -- the fd store ---------------------------------------------------------------------

class NotifySocket:
    """A bound SOCK_DGRAM socket standing in for systemd's notify socket."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(2.0)

    def recv(self) -> tuple[bytes, list[int]]:
        data, ancdata, _flags, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        return data, list(fds)

    def drain(self) -> list[bytes]:
        """Every datagram waiting, their fds closed (as systemd does for BARRIER=1)."""
        out = []
        self.sock.settimeout(0.05)
        try:
            while True:
                data, fds = self.recv()
                for fd in fds:
                    os.close(fd)
                out.append(data)
        except TimeoutError:
            return out
        finally:
            self.sock.settimeout(2.0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    ns = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield ns
    ns.close()


def pipe_fds(n: int) -> list[int]:
    fds = []
    for _ in range(n):
        r, w = os.pipe()
        os.close(w)
        fds.append(r)
    return fds


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_inherited_fds_by_port_and_claim():
    a, b, c, d = pipe_fds(4)
    h = handover.Handover({"port/br0": [a], "port/veth0": [b, c], "unknown": [d]}, store=False)
    assert h.claim("veth0") == [b, c]
    assert h.claim("veth0") == []
    assert h.claim("nope") == []
    assert h.claimed == 1
    names = h.close_unclaimed()
    assert sorted(names) == ["port/br0", "unknown"]
    assert not is_open(a) and not is_open(d)
    assert is_open(b) and is_open(c)  # claimed: the port's now
    os.close(b)
    os.close(c)


def test_store_follows_the_ports(notify_socket):
    h = handover.Handover({}, store=True)
    r, w = os.pipe()
    try:
        h.opened("veth0", [r])
        remove, _ = notify_socket.recv()
        store, fds = notify_socket.recv()
        assert remove == b"FDSTOREREMOVE=1\nFDNAME=port/veth0\n"
        assert store == b"FDSTORE=1\nFDNAME=port/veth0\n"
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(r).st_ino
        os.close(fds[0])
        h.opened("patch0", [])  # no fds: only the removal
        assert notify_socket.recv()[0] == b"FDSTOREREMOVE=1\nFDNAME=port/patch0\n"
        h.closed("veth0")
        assert notify_socket.recv()[0] == b"FDSTOREREMOVE=1\nFDNAME=port/veth0\n"
        h.freeze()  # handing over: closing keeps the stored fds
        h.closed("veth0")
        assert notify_socket.drain() == []
    finally:
        os.close(r)
        os.close(w)


def test_closing_a_tap_port_waits_for_systemd(notify_socket):
    """holds_device: a BARRIER=1 after the removal; answered once its fd is closed."""
    h = handover.Handover({}, store=True)
    got = []

    def systemd():
        for _ in range(2):
            data, fds = notify_socket.recv()
            got.append((data, len(fds)))
            for fd in fds:
                os.close(fd)

    t = threading.Thread(target=systemd)
    t.start()
    h.closed("tap0", holds_device=True)
    t.join(5)
    assert got == [(b"FDSTOREREMOVE=1\nFDNAME=port/tap0\n", 0), (b"BARRIER=1\n", 1)]


def test_barrier_times_out_without_an_answer(notify_socket):
    assert handover.barrier(0.1) is False  # nobody reads: the fd stays open


def test_unclaimed_fds_leave_the_store(notify_socket):
    (a,) = pipe_fds(1)
    h = handover.Handover({"port/gone": [a]}, store=True)
    assert h.close_unclaimed() == ["port/gone"]
    assert notify_socket.recv()[0] == b"FDSTOREREMOVE=1\nFDNAME=port/gone\n"
    assert not is_open(a)


def test_no_store_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    h = handover.Handover({})
    assert h.store is False
    h.opened("x", [0])
    h.closed("x", holds_device=True)  # nothing to wait for


# -- exec ---------------------------------------------------------------------------------

def test_listen_env_orders_by_name():
    order, env = handover.listen_env({"port/b": [7, 9], "port/a": [8]}, 1234)
    assert order == [8, 7, 9]
    assert env == {"LISTEN_PID": "1234", "LISTEN_FDS": "3",
                   "LISTEN_FDNAMES": "port/a:port/b:port/b"}


MOVE = """
import json, os, sys
from ovslite import handover
pipes = [os.pipe() for _ in range(4)]
# fds the move must not trip over: a wanted fd already in the target range (3, 4...)
wanted = [pipes[3][0], pipes[0][0], pipes[2][1]]
inodes = [os.fstat(fd).st_ino for fd in wanted]
handover.move_fds(wanted)
print(json.dumps({"want": inodes, "got": [os.fstat(3 + i).st_ino for i in range(3)],
                  "inheritable": [os.get_inheritable(3 + i) for i in range(3)]}))
"""


def test_move_fds_to_3_and_up():
    out = subprocess.run([sys.executable, "-c", MOVE], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    r = json.loads(out)
    assert r["got"] == r["want"]
    assert r["inheritable"] == [True, True, True]


EXEC = """
import os, sys
from ovslite import handover, sdnotify
got = sdnotify.listen_fds()
if got:
    (fd,) = got["port/x"]
    print("after exec:", os.read(fd, 100).decode(), sorted(got), os.getpid(), flush=True)
else:
    r, w = os.pipe()
    os.write(w, b"queued")
    print("before exec:", os.getpid(), flush=True)
    handover.restart_in_place({"port/x": [r]})
"""


def test_restart_in_place_passes_fds_the_systemd_way(tmp_path):
    script = tmp_path / "exec_me.py"
    script.write_text(EXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=30, env=env, check=True).stdout.splitlines()
    out = [line for line in out if line.startswith(("before exec:", "after exec:"))]
    assert out[0].startswith("before exec: ")
    pid = out[0].split()[-1]
    assert out[1] == f"after exec: queued ['port/x'] {pid}"


# -- providers -------------------------------------------------------------------------

def test_patch_hands_nothing_over():
    netdev = netdev_class("patch")("p0", {"peer": "p1"})
    netdev.open()
    assert netdev.handover_fds() == []
    netdev.prepare_handover()  # a no-op


def tap_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


@needs_tun
@pytest.mark.parametrize("kind", ["internal", "tap"])
def test_tap_ports_hand_over_their_fd(kind):
    name = tap_name("ovlh")
    first = netdev_class(kind)(name, {})
    first.open()
    try:
        (fd,) = first.handover_fds()
        assert fd == first.fd
        index = ifindex(name)
        kept = os.dup(fd)  # what the fd store keeps
        first.close()
        assert ifindex(name) == index, "the TAP went with the first instance's fd"
        second = netdev_class(kind)(name, {})
        second.open([kept])
        try:
            assert second.fd == kept and second.handover_fds() == [kept]
            assert ifindex(name) == index, "re-attaching made a new device"
        finally:
            second.close()
    finally:
        first.close()
    assert ifindex(name) is None


@needs_tun
def test_internal_port_deletes_a_tap_that_does_not_match():
    name, other = tap_name("ovlh"), tap_name("ovlh")
    stale = netdev_class("internal")(other, {})
    stale.open()
    kept = os.dup(stale.fd)
    stale.close()
    assert ifindex(other) is not None
    fresh = netdev_class("internal")(name, {})
    try:
        fresh.open([kept])  # not its TAP: deleted, and a new one made
        assert ifindex(other) is None
        assert ifindex(name) is not None and fresh.fd != kept
        assert not is_open(kept)
    finally:
        fresh.close()


@needs_tun
def test_tap_port_closes_an_fd_that_is_not_its_tap():
    (junk,) = pipe_fds(1)
    pipe = os.fstat(junk).st_ino
    name = tap_name("ovlh")
    netdev = netdev_class("tap")(name, {})
    try:
        netdev.open([junk])
        assert not is_open(junk) or os.fstat(junk).st_ino != pipe
        assert netdev.fd is not None and netdev.created
    finally:
        netdev.close()

"""What several unit tests build alike: a fake port type, an in-process daemon (a Switch
and its ControlServer on a uvloop loop in a thread, as ovslited runs them), ovslite-ctl
run against it, and bridges with the MAC addresses the forwarding tests use.
The pytest fixtures built on these are in conftest.py."""

from __future__ import annotations

import asyncio
import errno
import tempfile
import threading
import zlib

import uvloop
from click.testing import CliRunner

from ovslite.bridge import Bridge, Port
from ovslite.control.server import ControlServer
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB
from ovslite.mactable import DEFAULT_AGING
from ovslite.netdev import Netdev, NetdevError, netdev_types, register
from ovslite.switch import Switch
from ovslite_ctl.cli import cli
from ovslite_ctl.client import Client

# -- a port type without a device ----------------------------------------------------

TYPE = "test-fake"


class FakeNetdev(Netdev):
    """Opens nothing and keeps what it is asked to send; a name starting with "missing"
    fails like an absent interface."""

    type = TYPE
    options = frozenset({"peer", "color"})

    def __init__(self, name, options=None):
        super().__init__(name, options)
        self.sent: list[bytes] = []

    def open(self):
        if self.name.startswith("missing"):
            raise NetdevError(f"interface {self.name!r} does not exist", errno.ENODEV)

    def close(self):
        pass

    def fileno(self):
        return None

    def recv_batch(self, limit):
        return []

    def send_batch(self, packets):
        self.sent.extend(packets)
        return len(packets)

    def info(self):
        return {"kind": "fake", "peer": self.config.get("peer", "")}


class Sink:
    """A netdev for a bare Port (no Switch): keeps what the datapath sends it."""

    deliver_batch = None

    def __init__(self):
        self.sent = []

    def send_batch(self, packets):
        self.sent.extend(packets)
        return len(packets)


class FakeInternal(FakeNetdev):
    """Stands in for the bridge-local port, which would create a TAP; `mac` is what
    local_mac() reports (a test changes it as `ip link set address` would)."""

    type = "internal"

    def __init__(self, name, options=None):
        super().__init__(name, options)
        self.mac: bytes | None = b"\x02\xbb" + zlib.crc32(name.encode()).to_bytes(4, "big")

    def local_mac(self):
        return self.mac


if TYPE not in netdev_types():
    register(FakeNetdev)


# -- an in-process daemon ------------------------------------------------------------


def short_dir() -> str:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    return tempfile.mkdtemp(prefix="ovsl-", dir="/tmp")


class LoopThread:
    """A uvloop event loop in a thread, as the daemon runs one; `call` runs code on it."""

    def __init__(self):
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn, *args, **kwargs):
        async def run():
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Daemon:
    """A Switch and its ControlServer on `lt`; the datapath's clock reads `self.now`."""

    def __init__(self, lt: LoopThread, db_path: str, sock_path: str):
        self.lt = lt
        self.now = 1000.0
        self.datapath = Datapath(lt.loop, clock=lambda: self.now)
        self.switch = Switch(ConfigDB(db_path), self.datapath)
        self.server = ControlServer(self.switch, sock_path, lt.loop)
        self.path = sock_path

    def start(self) -> Daemon:
        self.lt.call(self.server.open)
        self.lt.call(self.switch.load)
        return self

    def stop(self):
        self.lt.call(self.server.close)
        self.lt.call(self.switch.shutdown)

    def client(self, timeout=5.0) -> Client:
        return Client(self.path, timeout).connect()


class CtlRunner:
    """ovslite-ctl run in-process against `daemon`: ctl(*args, code=0) checks the exit
    status and that nothing printed a traceback, and returns click's Result."""

    def __init__(self, daemon: Daemon):
        self.switch = daemon.switch
        self.call = daemon.lt.call
        self.path = daemon.path

    def __call__(self, *args, code=0):
        result = CliRunner().invoke(cli, ["--socket", self.path, *args])
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        return result


def one_line_error(result, code: int, text: str = "") -> str:
    """Check that ovslite-ctl failed with `code` and one "ovslite-ctl: ..." line on
    stderr containing `text`, and printed nothing else; return that line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovslite-ctl: "), result.stderr
    assert text in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


# -- bridges and MAC addresses -------------------------------------------------------

BCAST = b"\xff" * 6
MCAST = bytes.fromhex("01005e000001")
A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
C = bytes.fromhex("020000000003")
X = bytes.fromhex("0200000000ff")  # never seen


def make_bridge(n: int = 3, aging: float = DEFAULT_AGING) -> tuple[Bridge, list[Port]]:
    """Bridge br0 with ports p1..pN, all up."""
    br = Bridge("br0", aging=aging)
    ports = [br.add_port(Port(f"p{i}")) for i in range(1, n + 1)]
    for p in ports:
        br.set_port_state(p, True)
    return br, ports

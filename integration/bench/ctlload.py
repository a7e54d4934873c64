"""What control-socket load costs ovslited: `python -m integration.bench.ctlload CASE ...`.

  requests N         RSS before and after N random valid requests (ports added,
                     set and removed with random names, static MACs, settings, dumps)
  dumps N PORTS      RSS after N clients each ask for a GET_PORT dump of a
                     PORTS-port bridge and never read it, and after they leave
  idle N NOFILE      daemon CPU over IDLE_SECONDS with N idle clients under an fd
                     limit of NOFILE, how often the condition was logged, and
                     whether an old client is still answered

Each case starts its own ovslited (integration.daemon.Daemon: its own database
and socket in a temporary directory) and stops it. Bridges are named
"cl<4 hex>" so a leftover is recognisable; ports are patch ports (no kernel
device), so only the bridge's internal TAP touches the kernel. Figures are the
kernel's (/proc/PID/status VmRSS, /proc/PID/stat utime+stime), printed for
reading; integration/test_control_resources.py asserts the behaviour with
generous bounds, never a speed. Needs root (the bridge's TAP device).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovslite.control import messages as m
from ovslite.control.messages import Cmd

from ..daemon import Daemon, log_records

IDLE_SECONDS = 5.0
#: the log event ovslited writes when it stops accepting for want of fds
PAUSED_EVENT = "not accepting connections; new clients wait until one closes"
RESUMED_EVENT = "accepting connections again"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def connect(path: str, timeout: float = 5.0) -> socket.socket:
    """A connected client; waits up to `timeout` while the listen backlog is full
    (connect() on a Unix socket then fails with EAGAIN at once rather than blocking)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path}: listen backlog full for {timeout:g} s") from None
            time.sleep(0.01)
        except OSError:
            s.close()
            raise


class Conn:
    """A raw request/reply connection (no ovslite-ctl process per request)."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = connect(path, timeout)
        self.seq = 0

    def ask(self, cmd: Cmd, values: dict | None = None, dump: bool = False) -> list[m.Reply]:
        """Send one request; the replies up to its ack, error or NLMSG_DONE."""
        self.seq += 1
        self.sock.send(m.encode_request(cmd, values, self.seq, dump))
        out = []
        while True:
            reply = m.decode_reply(self.sock.recv(m.MAX_MSG_SIZE + 1))
            out.append(reply)
            if reply.seq == self.seq and reply.kind != "message":
                return out

    def close(self) -> None:
        self.sock.close()


def _name(rng: random.Random, prefix: str = "") -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_."
    return prefix + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 15 - len(prefix))))


def _mac(rng: random.Random) -> str:
    return "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))


def random_requests(conn: Conn, bridge: str, count: int, seed: int = 12) -> dict[str, int]:
    """`count` valid requests with random names, values and options; what the replies were."""
    rng = random.Random(seed)
    kinds: dict[str, int] = {}
    keep = "pkeep"  # static MACs go here: a port that is never removed
    conn.ask(Cmd.ADD_PORT, {"bridge": bridge, "port": keep, "type": "patch",
                            "options": {"peer": "qkeep"}, "may_exist": True})
    ports: list[str] = []
    macs: list[str] = []
    sent = 0
    while sent < count:
        roll = rng.random()
        if roll < 0.08 or not ports:
            name = _name(rng, "p")
            req = (Cmd.ADD_PORT, {"bridge": bridge, "port": name, "type": "patch",
                                  "options": {"peer": _name(rng, "q")}})
            ports.append(name)
        elif roll < 0.14:
            req = (Cmd.DEL_PORT, {"port": ports.pop(rng.randrange(len(ports)))})
        elif roll < 0.18:
            tag = str(rng.randint(1, 4094))
            req = (Cmd.SET_PORT, {"port": rng.choice(ports),
                                  "settings": {"tag": tag, "learning": rng.choice(("on", "off"))}})
        elif roll < 0.23:  # values padded with blanks (accepted): attributes of every length
            def pad(text: str) -> str:
                return " " * rng.randint(0, 3000) + text + " " * rng.randint(0, 3000)

            req = (Cmd.SET_PORT, {"port": rng.choice(ports), "settings": {
                "vlan-mode": "access", "tag": pad(str(rng.randint(1, 4094))),
                "mtu": pad(str(rng.randint(68, 9000))),
                "storm-control": pad(str(rng.randint(1, 10**6)))}})
        elif roll < 0.24:
            macs.append(_mac(rng))
            req = (Cmd.FDB_ADD, {"bridge": bridge, "mac": macs[-1], "port": keep})
        elif roll < 0.27 and macs:
            req = (Cmd.FDB_DEL, {"bridge": bridge, "mac": macs.pop(rng.randrange(len(macs)))})
        elif roll < 0.29:
            req = (Cmd.SET_BR, {"bridge": bridge,
                                "settings": {"mac-aging-time": str(rng.randint(10, 100000))}})
        elif roll < 0.50:
            req = (Cmd.GET_PORT, {"port": rng.choice(ports)}, True)
        elif roll < 0.65:
            req = (Cmd.GET_PORT, {"port": _name(rng, "x")}, True)  # ENOENT: refused, still valid
        elif roll < 0.75:
            req = (Cmd.GET_FDB, {"bridge": bridge, "vlan": rng.randint(0, 4094),
                                 "packed": rng.random() < 0.5}, True)
        elif roll < 0.85:
            req = (Cmd.FDB_STATS, {"bridge": bridge})
        elif roll < 0.92:
            req = (Cmd.GET_BR, {"bridge": bridge}, True)
        else:
            req = (Cmd.GET_VERSION, {})
        replies = conn.ask(*req)
        last = replies[-1]
        key = f"{req[0].name} {last.kind}" + (f" {last.errno}" if last.errno else "")
        kinds[key] = kinds.get(key, 0) + 1
        sent += 1
        if len(ports) > 64:  # keep the configuration small: growth must come from requests
            conn.ask(Cmd.DEL_PORT, {"port": ports.pop(0)})
            sent += 1
    for mac in macs:
        conn.ask(Cmd.FDB_DEL, {"bridge": bridge, "mac": mac})
    for name in ports:
        conn.ask(Cmd.DEL_PORT, {"port": name})
    return kinds


def add_patch_ports(conn: Conn, bridge: str, count: int) -> None:
    for i in range(count):
        replies = conn.ask(Cmd.ADD_PORT, {"bridge": bridge, "port": f"pp{i}", "type": "patch",
                                          "options": {"peer": f"qq{i}"}})
        if replies[-1].kind == "error":
            raise RuntimeError(f"add-port pp{i}: {replies[-1].message}")


def abandon_dumps(path: str, count: int) -> list[socket.socket]:
    """`count` clients that each ask for every port's details and read nothing."""
    clients = []
    for i in range(count):
        s = connect(path)
        s.send(m.encode_request(Cmd.GET_PORT, {}, i + 1, dump=True))
        clients.append(s)
    return clients


def open_idle(path: str, count: int, patience: float = 1.0) -> list[socket.socket]:
    """Up to `count` connected, silent clients; stops once none could connect for
    `patience` seconds (a full backlog refuses connect() with EAGAIN while the daemon
    is not accepting)."""
    out: list[socket.socket] = []
    while len(out) < count:
        try:
            out.append(connect(path, timeout=patience))
        except TimeoutError:
            break
    return out


def cpu_seconds(pid: int, over: float) -> float:
    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = ticks()
    time.sleep(over)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK")


def limit_fds(pid: int, nofile: int) -> None:
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={nofile}:{nofile}"], check=True,
                   capture_output=True, text=True, timeout=10)


def events(d: Daemon, event: str) -> int:
    return sum(r.get("event") == event for r in log_records(d.stderr()))


# -- the cases, as printed figures ------------------------------------------------------
class Run:
    """A private daemon with one bridge, removed whatever happens."""

    def __enter__(self) -> Run:
        self.dir = tempfile.mkdtemp(prefix="ovslite-ctlload-")
        self.daemon = Daemon(Path(self.dir), label="ovslited")
        self.daemon.start()
        self.pid = self.daemon.proc.pid
        self.bridge = "cl" + secrets.token_hex(2)
        self.daemon.ctl("add-br", self.bridge)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.daemon.running:
                self.daemon.ctl("del-br", self.bridge, check=False)
            self.daemon.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def case_requests(count: int) -> None:
    with Run() as r:
        conn = Conn(r.daemon.socket)
        random_requests(conn, r.bridge, 2000, seed=1)  # warm up: first-use allocations
        before = rss_mib(r.pid)
        t0 = time.monotonic()
        kinds = random_requests(conn, r.bridge, count, seed=2)
        took = time.monotonic() - t0
        conn.close()
        after = rss_mib(r.pid)
        print(f"{count:,} random valid requests in {took:.0f} s: VmRSS {before:.1f} -> {after:.1f} MiB")
        print("  replies:", ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())))


def case_dumps(count: int, ports: int) -> None:
    with Run() as r:
        conn = Conn(r.daemon.socket)
        add_patch_ports(conn, r.bridge, ports)
        time.sleep(1)
        start = rss_mib(r.pid)
        clients = abandon_dumps(r.daemon.socket, count)
        time.sleep(2)
        held = rss_mib(r.pid)
        for s in clients:
            s.close()
        time.sleep(3)  # the server trims the heap a second after the dumps end
        left = rss_mib(r.pid)
        answered = conn.ask(Cmd.GET_VERSION)[-1].kind == "ack"
        print(f"{count} unread GET_PORT dumps of {ports} ports: VmRSS {start:.1f} MiB before, "
              f"{held:.1f} MiB while unread, {left:.1f} MiB after the clients left"
              f" (old client answered: {answered})")


def case_idle(count: int, nofile: int) -> None:
    with Run() as r:
        old = Conn(r.daemon.socket)
        limit_fds(r.pid, nofile)
        clients = open_idle(r.daemon.socket, count)
        time.sleep(1)
        cpu = cpu_seconds(r.pid, IDLE_SECONDS)
        t0 = time.monotonic()
        answered = old.ask(Cmd.GET_VERSION)[0].kind == "message"
        rtt = time.monotonic() - t0
        for s in clients:
            s.close()
        new = Conn(r.daemon.socket)
        served = new.ask(Cmd.GET_VERSION)[0].kind == "message"
        log = r.daemon.stderr()
        print(f"{len(clients)} idle clients connected (of {count} tried) at nofile {nofile}: "
              f"daemon CPU {cpu:.2f} s in {IDLE_SECONDS:g} s; old client answered: {answered} "
              f"in {rtt * 1000:.0f} ms; new client after they left served: {served}")
        print(f"  log: {events(r.daemon, PAUSED_EVENT)} '{PAUSED_EVENT}', "
              f"{events(r.daemon, RESUMED_EVENT)} '{RESUMED_EVENT}', "
              f"{log.count('accept failed')} 'accept failed' lines, {len(log) / 1e6:.2f} MB of log")


def main(argv: list[str]) -> int:
    cases = {"requests": (case_requests, 1), "dumps": (case_dumps, 2), "idle": (case_idle, 2)}
    if argv and argv[0] in cases and len(argv) == 1 + cases[argv[0]][1]:
        fn, _ = cases[argv[0]]
        fn(*map(int, argv[1:]))
        return 0
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

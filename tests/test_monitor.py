"""MONITOR: switch and MAC events streamed over a real socket, the hub's listeners,
lost events for a slow reader, and `ovslite-ctl monitor`."""

from __future__ import annotations

import errno
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import structlog
from click.testing import CliRunner
from helpers import TYPE, Daemon

from ovslite.control import monitor as monmod
from ovslite.vnet import ethernet
from ovslite_ctl import cli as climod
from ovslite_ctl.client import Client, DaemonError

A, B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")


def frame(src: bytes, dst: bytes = b"\xff" * 6) -> bytes:
    return ethernet(dst + src + b"\x08\x00" + bytes(46))


@pytest.fixture
def daemon(daemon):
    """conftest.py's daemon, its log kept out of the test's output."""
    with structlog.testing.capture_logs():
        yield daemon


class Watcher:
    """A monitor client reading in a thread; events land in a queue."""

    def __init__(self, d: Daemon, **kwargs):
        self.client = d.client(timeout=10)
        self.events: queue.Queue = queue.Queue()
        self.gen = self.client.monitor(**kwargs)
        first = next(self.gen)  # the subscription is in place once this arrives
        assert first["event"] == "subscribed", first
        self.first = first
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.gen:
                self.events.put(event)
        except Exception as exc:  # closed at the end of the test
            self.events.put({"event": "error", "error": exc})

    def take(self, n: int, timeout: float = 5.0) -> list[dict]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            out.append(self.events.get(timeout=max(deadline - time.monotonic(), 0.01)))
        return out

    def quiet(self, wait: float = 0.2) -> bool:
        time.sleep(wait)
        return self.events.empty()

    def close(self):
        self.client.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's recv
        self.thread.join(5)
        self.client.close()


def brief(events: list[dict]) -> list[tuple]:
    out = []
    for e in events:
        extra = {k: v for k, v in e.items() if k not in ("time", "event", "bridge")}
        out.append((e["event"], e.get("bridge"), extra))
    return out


def inject(d: Daemon, port: str, frames: list[bytes]) -> None:
    d.lt.call(lambda: d.datapath.input(d.switch.ports[port], frames, 0))


def hooks(d: Daemon) -> tuple[int, dict]:
    """(how many switch listeners, {bridge: has a MAC listener})."""
    return d.lt.call(lambda: (len(d.switch.listeners),
                              {n: b.macs.listener is not None for n, b in d.switch.bridges.items()}))


def wait_until(fn, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- switch events ----------------------------------------------------------------------


def test_config_events_arrive_in_order(daemon):
    w = Watcher(daemon)
    assert w.first["groups"] == 7
    before = time.time_ns()
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
        c.set_port("p1", {"tag": "20", "learning": "off"})
        c.set_port("p1", {"admin": "down"})
        c.del_port("p1")
        c.del_bridge("br0")
    events = w.take(11)
    assert brief(events) == [
        ("bridge-added", "br0", {}),
        ("port-added", "br0", {"port": "br0", "type": "internal", "port_no": 1}),
        ("port-state", "br0", {"port": "br0", "up": 1}),
        ("port-added", "br0", {"port": "p1", "type": TYPE, "port_no": 2}),
        ("port-state", "br0", {"port": "p1", "up": 1}),
        ("port-settings", "br0", {"port": "p1", "settings": {"tag": "20", "learning": "off"}}),
        ("port-settings", "br0", {"port": "p1", "settings": {"tag": "20", "learning": "off",
                                                             "admin": "down"}}),
        ("port-state", "br0", {"port": "p1", "up": 0, "reason": "administratively down"}),
        ("port-removed", "br0", {"port": "p1"}),
        ("port-removed", "br0", {"port": "br0"}),
        ("bridge-removed", "br0", {}),
    ]
    times = [e["time"] for e in events]
    assert times == sorted(times) and before <= times[0] <= time.time_ns()
    assert w.quiet()
    w.close()


def test_link_state_with_reason(daemon):
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
    w = Watcher(daemon, groups=int(monmod.STATE))
    port = daemon.switch.port("p1")
    daemon.lt.call(daemon.switch.set_state, port, False, "no carrier")
    daemon.lt.call(daemon.switch.set_state, port, True)
    with daemon.client() as c:
        c.set_port("p1", {"learning": "off"})  # CONFIG: not asked for
    assert brief(w.take(2)) == [
        ("port-state", "br0", {"port": "p1", "up": 0, "reason": "no carrier"}),
        ("port-state", "br0", {"port": "p1", "up": 1}),
    ]
    assert w.quiet()
    w.close()


def test_bridge_filter_and_bad_requests(daemon):
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_bridge("br1")
        with pytest.raises(DaemonError, match="no bridge named nope") as exc:
            next(c.monitor(bridge="nope"))
        assert exc.value.errno == errno.ENOENT
    for groups in (0, 8, 0xFFFF):
        with daemon.client() as c, pytest.raises(DaemonError, match="invalid monitor groups"):
            next(c.monitor(groups=groups))
    w = Watcher(daemon, bridge="br1")
    with daemon.client() as c:
        c.add_port("br0", "p0", TYPE)
        c.add_port("br1", "p1", TYPE)
    assert [(e["event"], e["bridge"], e["port"]) for e in w.take(2)] == [
        ("port-added", "br1", "p1"), ("port-state", "br1", "p1")]
    assert w.quiet()
    w.close()


# -- MAC events -----------------------------------------------------------------------------


def test_mac_learned_moved_aged_evicted(daemon):
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
        c.add_port("br0", "p2", TYPE)
        c.set_port("p2", {"tag": "5"})
    w = Watcher(daemon, groups=int(monmod.FDB))
    inject(daemon, "p1", [frame(A)])
    inject(daemon, "p2", [frame(A)])  # A moves to p2 (and to VLAN 5: a new entry there)
    inject(daemon, "p1", [frame(A)])  # seen again where it was: no event
    inject(daemon, "p2", [frame(B)])
    events = w.take(3)
    assert [(e["event"], e["bridge"], e["port"], e["vlan"], e["mac"], e.get("old_port"))
            for e in events] == [
        ("mac-learned", "br0", "p1", 0, "02:00:00:00:00:0a", None),
        ("mac-learned", "br0", "p2", 5, "02:00:00:00:00:0a", None),
        ("mac-learned", "br0", "p2", 5, "02:00:00:00:00:0b", None),
    ]
    with daemon.client() as c:
        c.set_port("p2", {"tag": ""})  # p2 back to VLAN 0 (its entries are flushed)
    inject(daemon, "p2", [frame(A)])
    (moved,) = w.take(1)
    assert (moved["event"], moved["port"], moved["old_port"], moved["vlan"]) == (
        "mac-moved", "p2", "p1", 0)
    with daemon.client() as c:
        c.set_bridge("br0", {"mac-table-size": "1"})  # A stays, nothing to evict
        inject(daemon, "p1", [frame(B)])  # the table is full: A (p2's only entry) goes
    evicted, learned = w.take(2)
    assert (evicted["event"], evicted["mac"], evicted["port"]) == ("mac-evicted", "02:00:00:00:00:0a", "p2")
    assert (learned["event"], learned["mac"], learned["port"]) == ("mac-learned", "02:00:00:00:00:0b", "p1")
    daemon.now += 1000
    daemon.lt.call(daemon.switch.run_timers, daemon.now)
    (aged,) = w.take(1)
    assert (aged["event"], aged["mac"], aged["port"]) == ("mac-aged", "02:00:00:00:00:0b", "p1")
    assert w.quiet()
    w.close()


def test_two_monitors_both_get_events(daemon):
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
    w1, w2 = Watcher(daemon), Watcher(daemon, groups=int(monmod.FDB))
    inject(daemon, "p1", [frame(A), frame(B)])
    with daemon.client() as c:
        c.add_port("br0", "p2", TYPE)
    got1 = [(e["event"], e.get("mac", e.get("port"))) for e in w1.take(4)]
    got2 = [(e["event"], e.get("mac", e.get("port"))) for e in w2.take(2)]
    assert got1 == [("mac-learned", "02:00:00:00:00:0a"), ("mac-learned", "02:00:00:00:00:0b"),
                    ("port-added", "p2"), ("port-state", "p2")]
    assert got2 == got1[:2]
    assert w1.quiet() and w2.quiet(0)
    w1.close()
    w2.close()


def test_listeners_only_while_monitors_run(daemon):
    with daemon.client() as c:
        c.add_bridge("br0")
    base = hooks(daemon)[0]
    assert hooks(daemon)[1] == {"br0": False}
    w1 = Watcher(daemon, groups=int(monmod.CONFIG))  # no FDB: the dataplane pays nothing
    assert hooks(daemon) == (base + 1, {"br0": False})
    w2 = Watcher(daemon, groups=int(monmod.FDB), bridge="br0")
    assert hooks(daemon) == (base + 1, {"br0": True})
    with daemon.client() as c:
        c.add_bridge("br1")  # created while monitors run: w2 wants br0 only
        w3 = Watcher(daemon)
        c.add_bridge("br2")
    assert hooks(daemon) == (base + 1, {"br0": True, "br1": True, "br2": True})
    w3.close()
    wait_until(lambda: hooks(daemon) == (base + 1, {"br0": True, "br1": False, "br2": False}))
    w2.close()
    wait_until(lambda: hooks(daemon) == (base + 1, {"br0": False, "br1": False, "br2": False}))
    w1.close()
    wait_until(lambda: hooks(daemon)[0] == base)
    assert daemon.lt.call(lambda: daemon.server.monitors.monitors) == []


def test_slow_monitor_never_slows_forwarding(daemon, monkeypatch):
    monkeypatch.setattr(daemon.server.monitors, "limit", 4096)
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
        c.add_port("br0", "p2", TYPE)
    client = daemon.client(timeout=10)
    gen = client.monitor(groups=int(monmod.FDB))
    assert next(gen)["event"] == "subscribed"  # and now it reads nothing for a while
    for burst in range(20):
        inject(daemon, "p1", [frame(bytes([2, 0, burst, 0, i >> 8, i & 255]))
                              for i in range(1000)])
    tx = daemon.lt.call(lambda: daemon.switch.ports["p2"].stats.tx_packets)
    assert tx == 20_000  # every frame forwarded while the monitor sat on its events
    stats = daemon.lt.call(lambda: daemon.switch.bridge("br0").macs.stats)
    total = stats.learned + stats.evicted
    assert stats.learned == 20_000 and stats.evicted > 0
    # Now read: the events that fit, in order, then how many were lost.
    mac_events = lost = 0
    last = 0
    for event in gen:
        if event["event"] == "lost":
            lost += event["dropped"]
        else:
            assert event["event"] in ("mac-learned", "mac-evicted")
            assert event["time"] >= last
            last = event["time"]
            mac_events += 1
        if mac_events + lost == total:
            break
    assert lost > 0 and mac_events >= 4096
    client.close()
    wait_until(lambda: hooks(daemon) == (hooks(daemon)[0], {"br0": False}))


def test_events_keep_flowing_after_loss(daemon, monkeypatch):
    monkeypatch.setattr(daemon.server.monitors, "limit", 10)
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
    w = Watcher(daemon, groups=int(monmod.FDB))

    def burst():  # one loop callback: nothing is sent until it returns
        p1 = daemon.switch.ports["p1"]
        daemon.datapath.input(p1, [frame(bytes([2, 0, 0, 0, 1, i])) for i in range(30)], 0)

    daemon.lt.call(burst)
    events = w.take(11)
    assert [e["event"] for e in events] == ["mac-learned"] * 10 + ["lost"]
    assert events[-1]["dropped"] == 20
    inject(daemon, "p1", [frame(A)])
    assert w.take(1)[0]["mac"] == "02:00:00:00:00:0a"
    w.close()


# -- ovslite-ctl monitor --------------------------------------------------------------------


def run_ctl_monitor(daemon, monkeypatch, args, actions, n_events):
    """Run `ovslite-ctl monitor` in-process; do `actions` once it is subscribed, then
    stop it with a KeyboardInterrupt (Ctrl-C) after `n_events` events."""
    real = Client.monitor

    def scripted(self, *a, **kw):
        gen = real(self, *a, **kw)
        yield next(gen)
        actions()
        for _ in range(n_events):
            yield next(gen)
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(Client, "monitor", scripted)
        return CliRunner().invoke(climod.cli, ["--socket", daemon.path, *args])


def test_ctl_monitor_text_and_json(daemon, monkeypatch):
    def actions():
        with daemon.client() as c:
            c.add_bridge("br0")
            c.add_port("br0", "p1", TYPE)
        daemon.lt.call(daemon.switch.set_state, daemon.switch.port("p1"), False, "no carrier")

    r = run_ctl_monitor(daemon, monkeypatch, ["monitor"], actions, 6)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [line.split(" ", 2)[1:] for line in lines] == [
        ["bridge-added", "bridge=br0"],
        ["port-added", "bridge=br0 port=br0 type=internal port_no=1"],
        ["port-state", "bridge=br0 port=br0 state=up"],
        ["port-added", f"bridge=br0 port=p1 type={TYPE} port_no=2"],
        ["port-state", "bridge=br0 port=p1 state=up"],
        ["port-state", 'bridge=br0 port=p1 state=down reason="no carrier"'],
    ]
    assert lines[0][4] == "-" and lines[0][10] == "T"  # an ISO timestamp first

    def more():
        daemon.lt.call(daemon.switch.set_state, daemon.switch.port("p1"), True)
        inject(daemon, "p1", [frame(B)])
        with daemon.client() as c:
            c.set_port("p1", {"tag": "3"})

    args = ["--format", "json", "monitor", "--bridge", "br0"]
    r = run_ctl_monitor(daemon, monkeypatch, args, more, 3)
    assert r.exit_code == 0, r.output
    up, learned, settings = [json.loads(line) for line in r.stdout.splitlines()]
    assert (up["event"], up["state"], "reason" in up) == ("port-state", "up", False)
    assert abs(learned.pop("time") - time.time()) < 60
    assert learned == {"event": "mac-learned", "bridge": "br0", "port": "p1", "vlan": 0,
                       "mac": "02:00:00:00:00:0b"}
    assert settings["event"] == "port-settings" and settings["settings"] == {"tag": "3"}


@pytest.mark.parametrize("args,text", [
    (["monitor", "--group", "bogus"], "'bogus' is not one of"),
    (["monitor", "--bridge", "a/b"], "contains '/'"),
    (["monitor", "extra"], "unexpected extra argument"),
])
def test_ctl_monitor_usage_errors(tmp_path, args, text):
    r = CliRunner().invoke(climod.cli, ["--socket", str(tmp_path / "none.sock"), *args])
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("ovslite-ctl: ") and text in line


def test_ctl_monitor_refused_and_unreachable(daemon, tmp_path):
    r = CliRunner().invoke(climod.cli, ["--socket", daemon.path, "monitor", "--bridge", "nope"])
    assert (r.exit_code, r.stderr) == (1, "ovslite-ctl: no bridge named nope\n")
    r = CliRunner().invoke(climod.cli, ["--socket", str(tmp_path / "x.sock"), "monitor"])
    assert r.exit_code == 1 and "cannot connect to ovslited" in r.stderr


def test_ctl_monitor_ctrl_c_exits_0(daemon):
    """A real process and a real SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ovslite_ctl.cli import main; sys.exit(main())",
         "--socket", daemon.path, "monitor"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: daemon.lt.call(lambda: len(daemon.server.monitors.monitors)) == 1, 20)
        with daemon.client() as c:
            c.add_bridge("br0")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == "" and " bridge-added bridge=br0" in out.splitlines()[0]
    wait_until(lambda: daemon.lt.call(lambda: daemon.server.monitors.monitors) == [])

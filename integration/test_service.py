"""ovslite as a systemd service, under a real systemd booted with systemd-nspawn.

One container serves the whole module (booting takes seconds, building its
tree about a minute the first time: see integration/nspawn.py). ovslite is
installed in it with `make install-service WHEELS=...` from this source tree,
as a user would, and the tests run in file order against that one service,
each first making sure it is active. Where no container can be booted, these
tests are skipped with the reason and test_notify_protocol still runs: it
checks the daemon's side of sd_notify against a socket of our own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import nspawn

pytestmark = pytest.mark.integration

UNIT = "ovslite.service"
SOCK = "/run/ovslite/ovslite.sock"
DB = "/var/lib/ovslite/conf.db"
VENV = "/opt/ovslite/venv"
#: how long systemd may take to notice a crash or a missed watchdog and restart
RESTART_TIMEOUT = 40.0


def _db(bridges: dict) -> str:
    return json.dumps({"format": 1, "bridges": bridges})


def _bridge(name: str, **ports) -> dict:
    """A bridge with its own internal port plus `ports` (name -> (type, options))."""
    all_ports = {name: {"type": "internal", "options": {}}}
    for port, (type_, options) in ports.items():
        all_ports[port] = {"type": type_, "options": options}
    return {"config": {}, "ports": all_ports}


#: the configuration the service starts with: one bridge, its internal port
#: (a TAP: /dev/net/tun) and a veth end (AF_PACKET)
START_DB = {"br0": _bridge("br0", veth0=("system", {}))}


# -- the container -------------------------------------------------------------

@pytest.fixture(scope="module")
def box(tmp_path_factory):
    why = nspawn.why_unusable()
    if why is None:
        why = nspawn.ensure_tools()
    if why is not None:
        print(f"\nskipping the systemd service tests: {why}", file=sys.stderr)
        pytest.skip(f"cannot boot a systemd container here: {why}")
    try:
        tree = nspawn.build_tree(log=lambda msg: print(msg, file=sys.stderr))
        wheels = nspawn.build_wheelhouse(log=lambda msg: print(msg, file=sys.stderr))
    except nspawn.Unusable as exc:
        print(f"\nskipping the systemd service tests: {exc}", file=sys.stderr)
        pytest.skip(f"cannot build the container: {exc}")
    logs = tmp_path_factory.mktemp("nspawn")
    c = nspawn.Container(tree, binds={nspawn.REPO: "/src", wheels: "/mnt/wheels"}, log_dir=logs)
    try:
        c.start()
    except nspawn.Unusable as exc:
        c.stop()
        print(f"\nskipping the systemd service tests: {exc}", file=sys.stderr)
        pytest.skip(f"cannot boot the container: {exc}")
    try:
        install(c)
        yield c
    finally:
        c.stop()


def install(c: nspawn.Container) -> None:
    """What an administrator does: make install-service, a database, enable --now."""
    out = c.run("make", "-C", "/src", "install-service", "WHEELS=/mnt/wheels", timeout=300)
    assert "skipped systemctl daemon-reload" not in out.stdout, out.stdout
    c.sh("ip link add veth0 type veth peer name veth0p && ip link set veth0p up")
    c.sh("useradd --no-create-home --shell /bin/sh outsider; "
         "useradd --no-create-home --shell /bin/sh --groups ovslite member")
    write_db(c, START_DB)
    c.run("systemctl", "enable", "--now", UNIT, timeout=120)


def write_db(c: nspawn.Container, bridges: dict | str) -> None:
    text = bridges if isinstance(bridges, str) else _db(bridges)
    c.run("sh", "-ec", f"mkdir -p /var/lib/ovslite && cat > {DB}.new && mv {DB}.new {DB}",
          input=text)


def props(c: nspawn.Container, *names: str) -> dict[str, str]:
    return c.show(UNIT, *names)


def ensure_active(c: nspawn.Container) -> dict[str, str]:
    """Bring the service back to active with START_DB-like config if a test broke it."""
    p = props(c, "ActiveState")
    if p["ActiveState"] != "active":
        c.run("systemctl", "reset-failed", UNIT, check=False)
        c.run("systemctl", "start", UNIT, timeout=120)
    return wait_active(c)


def wait_active(c: nspawn.Container, other_than_pid: str | None = None,
                timeout: float = RESTART_TIMEOUT) -> dict[str, str]:
    """Wait for ActiveState=active (with a main PID other than `other_than_pid`)."""
    def ready():
        p = props(c, "ActiveState", "SubState", "MainPID", "StatusText", "NRestarts")
        if p["ActiveState"] == "active" and p["MainPID"] not in ("0", other_than_pid):
            return p
        return None

    return c.wait_for(ready, timeout=timeout, what=f"{UNIT} active (old pid {other_than_pid})")


def journal(c: nspawn.Container, since_cursor: str | None = None) -> str:
    args = ["journalctl", "--no-pager", "-o", "cat", "-u", UNIT]
    if since_cursor:
        args.append(f"--after-cursor={since_cursor}")
    return c.run(*args).stdout


def cursor(c: nspawn.Container) -> str:
    out = c.run("journalctl", "--no-pager", "-n", "0", "--show-cursor", "-u", UNIT).stdout
    m = re.search(r"-- cursor: (\S+)", out)
    return m.group(1) if m else ""


def ctl_available(c: nspawn.Container) -> bool:
    r = c.run(f"{VENV}/bin/python", "-c", "import ovslite_ctl.cli", check=False)
    return r.returncode == 0


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(exc.__class__.__name__, exc.errno)
    sys.exit(1)
print("connected")
"""


# -- tests ---------------------------------------------------------------------

def test_unit_verifies(box):
    r = box.run("systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}", check=False)
    assert r.returncode == 0, f"systemd-analyze verify failed:\n{r.stdout}{r.stderr}"
    mine = [line for line in (r.stdout + r.stderr).splitlines() if UNIT in line]
    assert not mine, "systemd-analyze verify warned:\n" + "\n".join(mine)


def test_installed_layout(box):
    r = box.sh("readlink /usr/local/bin/ovslited /usr/local/bin/ovslite-ctl; getent group ovslite")
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"{VENV}/bin/ovslited", f"{VENV}/bin/ovslite-ctl"]
    assert lines[2].startswith("ovslite:")
    assert box.show(UNIT, "UnitFileState")["UnitFileState"] == "enabled"


def test_active_after_ready_with_counts(box):
    p = ensure_active(box)
    full = props(box, "Type", "NotifyAccess", "StatusText", "WatchdogUSec", "SubState")
    assert full["Type"] == "notify"
    assert full["NotifyAccess"] == "main"
    assert full["WatchdogUSec"] == "10s"
    assert full["SubState"] == "running"
    assert full["StatusText"] == "1 bridges, 2 ports", p
    # READY=1 is sent after the "started" log line, and systemd declares the
    # unit started only once it has READY=1.
    text = journal(box)
    started = text.find('"event": "started"')
    active = text.find("Started ovslite.service")
    assert 0 <= started < active, f"expected the daemon's start before systemd's:\n{text}"
    # the ports really are open: the TAP of br0 exists, veth0 is up
    links = box.run("ip", "-o", "link").stdout
    assert re.search(r"\bbr0:", links) and re.search(r"\bveth0@", links), links


def test_status_follows_changes(box):
    ensure_active(box)
    if not ctl_available(box):
        pytest.skip("ovslite-ctl (ovslite_ctl.cli) is not in the tree yet")
    box.run(f"{VENV}/bin/ovslite-ctl", "add-br", "br9")
    try:
        box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "2 bridges, 3 ports",
                     what="STATUS after add-br")
    finally:
        box.run(f"{VENV}/bin/ovslite-ctl", "del-br", "br9")
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "1 bridges, 2 ports",
                 what="STATUS after del-br")


def test_control_socket_permissions(box):
    ensure_active(box)
    st = box.run("stat", "-c", "%A %U %G", SOCK).stdout.split()
    assert st == ["srw-rw----", "root", "ovslite"], st
    assert box.run("stat", "-c", "%a", "/run/ovslite").stdout.strip() == "755"
    assert box.run("stat", "-c", "%a", "/var/lib/ovslite").stdout.strip() == "700"
    assert box.run("stat", "-c", "%a", DB).stdout.strip() == "600"

    python = "/usr/bin/python3"
    outsider = box.run(python, "-c", CONNECT, SOCK, user="outsider", check=False)
    assert outsider.returncode == 1 and outsider.stdout.strip() == "PermissionError 13", outsider
    member = box.run(python, "-c", CONNECT, SOCK, user="member", check=False)
    assert member.returncode == 0 and member.stdout.strip() == "connected", member
    root = box.run(python, "-c", CONNECT, SOCK, check=False)
    assert root.stdout.strip() == "connected", root


def test_ctl_show_inside(box):
    ensure_active(box)
    if not ctl_available(box):
        pytest.skip("ovslite-ctl (ovslite_ctl.cli) is not in the tree yet; "
                    "test_control_socket_permissions checked the socket")
    for user in (None, "member"):
        out = box.run(f"{VENV}/bin/ovslite-ctl", "show", user=user).stdout
        assert "br0" in out and "veth0" in out, out
    denied = box.run(f"{VENV}/bin/ovslite-ctl", "show", user="outsider", check=False)
    assert denied.returncode != 0
    assert "ermission denied" in denied.stdout + denied.stderr, denied


def test_reload_applies_database_and_refuses_a_corrupt_one(box):
    ensure_active(box)
    pid = props(box, "MainPID")["MainPID"]
    two = {**START_DB, "br1": _bridge("br1")}
    write_db(box, two)
    mark = cursor(box)
    box.run("systemctl", "reload", UNIT)
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "2 bridges, 3 ports",
                 what="STATUS after reload")
    assert re.search(r"\bbr1:", box.run("ip", "-o", "link").stdout)
    assert '"event": "reloaded"' in journal(box, mark)

    write_db(box, "{ this is not json")
    mark = cursor(box)
    try:
        box.run("systemctl", "reload", UNIT)
        box.wait_for(lambda: "reload refused" in props(box, "StatusText")["StatusText"],
                     what="STATUS after a refused reload")
        p = props(box, "ActiveState", "MainPID", "StatusText")
        assert p["ActiveState"] == "active" and p["MainPID"] == pid, p
        assert p["StatusText"].startswith("2 bridges, 3 ports; reload refused:"), p
        assert "reload refused, keeping the running configuration" in journal(box, mark)
        assert re.search(r"\bbr1:", box.run("ip", "-o", "link").stdout), "br1 lost"
    finally:
        write_db(box, START_DB)
    box.run("systemctl", "reload", UNIT)
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "1 bridges, 2 ports",
                 what="STATUS back to the start configuration")


def test_netns_ports_under_the_sandbox(box):
    """Internal ports moved into a named netns created after the daemon started
    and into a process's netns: setns(2) (CAP_SYS_ADMIN, RestrictNamespaces=net,
    the syscall filter), /run/netns (ProtectSystem=strict, mount propagation),
    /proc/PID/ns/net (CAP_SYS_PTRACE, ProtectProc=invisible), /dev/net/tun
    (DeviceAllow=) and frames through the TAP."""
    ensure_active(box)
    box.run("ip", "netns", "add", "ctr1")
    pid = box.sh("unshare --net sleep 600 >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        cfg = {"br0": _bridge("br0", veth0=("system", {}),
                              c1=("internal", {"netns": "ctr1", "ifname": "eth0",
                                               "ip": "10.77.0.2/24"}),
                              c2=("internal", {"netns_pid": pid, "ifname": "eth1",
                                               "ip": "10.77.0.3/24"}))}
        write_db(box, cfg)
        box.run("systemctl", "reload", UNIT)
        box.wait_for(lambda: props(box, "StatusText")["StatusText"].startswith("1 bridges, 4 ports"),
                     what="STATUS after adding the netns ports")
        status = props(box, "StatusText")["StatusText"]
        assert status == "1 bridges, 4 ports", f"{status}\n{journal(box)[-3000:]}"
        addr = box.run("ip", "-n", "ctr1", "-o", "addr", "show", "dev", "eth0").stdout
        assert "10.77.0.2/24" in addr, addr
        addr = box.run("nsenter", "-t", pid, "-n", "ip", "-o", "addr", "show", "dev", "eth1").stdout
        assert "10.77.0.3/24" in addr, addr
        # frames flow between the two namespaces through the daemon's bridge
        box.run("ip", "netns", "exec", "ctr1", "ping", "-c", "2", "-W", "2", "10.77.0.3", timeout=30)
    finally:
        write_db(box, START_DB)
        box.run("systemctl", "reload", UNIT, check=False)
        box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "1 bridges, 2 ports",
                     what="netns ports removed")
        box.run("ip", "netns", "del", "ctr1", check=False)
        box.run("kill", pid, check=False)


def test_restart_keeps_configuration(box):
    p = ensure_active(box)
    box.run("systemctl", "restart", UNIT, timeout=120)
    q = wait_active(box, other_than_pid=p["MainPID"])
    assert q["StatusText"] == "1 bridges, 2 ports", q
    assert json.loads(box.run("cat", DB).stdout)["bridges"].keys() == START_DB.keys()
    links = box.run("ip", "-o", "link").stdout
    assert re.search(r"\bbr0:", links), links


def test_kill_9_is_restarted(box):
    p = ensure_active(box)
    restarts = int(p["NRestarts"])
    box.run("kill", "-9", p["MainPID"])
    q = wait_active(box, other_than_pid=p["MainPID"])
    assert int(q["NRestarts"]) == restarts + 1, q
    assert q["StatusText"] == "1 bridges, 2 ports", q


def test_hung_event_loop_is_restarted_by_the_watchdog(box):
    p = ensure_active(box)
    restarts = int(p["NRestarts"])
    mark = cursor(box)
    box.run("kill", "-STOP", p["MainPID"])  # the loop stops: no more WATCHDOG=1
    q = wait_active(box, other_than_pid=p["MainPID"], timeout=RESTART_TIMEOUT)
    assert int(q["NRestarts"]) == restarts + 1, q
    assert "Watchdog timeout" in journal(box, mark)


FDTEST = """#!/opt/ovslite/venv/bin/python
import os, time
from ovslite import sdnotify
got = sdnotify.listen_fds()
if got:
    print("got", sorted(got), os.read(got["pipe-r"][0], 10).decode(), flush=True)
    os.write(got["pipe-w"][0], b"kept")  # for the next instance
else:
    r, w = os.pipe()
    os.write(w, b"kept")
    sdnotify.store_fds("pipe-r", [r])
    sdnotify.store_fds("pipe-w", [w])
    print("stored", flush=True)
sdnotify.ready("ok")
time.sleep(1000)
"""

FDTEST_UNIT = """[Service]
Type=notify
ExecStart=/usr/local/bin/ovslite-fdtest
FileDescriptorStoreMax=16
Restart=on-failure
RestartSec=0.2
"""


def test_fd_store_round_trip(box):
    """sdnotify.store_fds/listen_fds against systemd itself (for the port fd
    hand-over): fds come back after `systemctl restart` and after a crash,
    and are dropped by stop + start."""
    box.run("sh", "-ec", "cat > /usr/local/bin/ovslite-fdtest && chmod +x /usr/local/bin/ovslite-fdtest",
            input=FDTEST)
    box.run("sh", "-ec", "cat > /etc/systemd/system/ovslite-fdtest.service", input=FDTEST_UNIT)
    unit = "ovslite-fdtest.service"
    box.run("systemctl", "daemon-reload")
    try:
        box.run("systemctl", "start", unit)
        assert box.show(unit, "NFileDescriptorStore")["NFileDescriptorStore"] == "2"
        box.run("systemctl", "restart", unit)
        pid = box.show(unit, "MainPID")["MainPID"]
        box.run("kill", "-9", pid)

        def restarted() -> bool:
            p = box.show(unit, "ActiveState", "MainPID")
            return p["ActiveState"] == "active" and p["MainPID"] not in ("0", pid)

        box.wait_for(restarted, what="fdtest restarted after kill -9")
        box.run("systemctl", "stop", unit)
        box.run("systemctl", "start", unit)
        out = box.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout
        lines = [line for line in out.splitlines() if line.startswith(("got", "stored"))]
        assert lines == ["stored", "got ['pipe-r', 'pipe-w'] kept", "got ['pipe-r', 'pipe-w'] kept",
                         "stored"], out
    finally:
        box.run("systemctl", "stop", unit, check=False)


def test_security_exposure(box):
    """Report `systemd-analyze security` (not a pass/fail threshold beyond 'not unsafe')."""
    out = box.run("systemd-analyze", "security", "--no-pager", UNIT, check=False).stdout
    m = re.search(r"Overall exposure level for ovslite.service: ([0-9.]+) (\w+)", out)
    assert m, out
    print(f"\nsystemd-analyze security {UNIT}: {m.group(1)} {m.group(2)}", file=sys.stderr)
    assert float(m.group(1)) < 5.0, out


# -- without a container: the daemon's side of the protocol -------------------

@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="needs root and /dev/net/tun")
def test_notify_protocol(tmp_path):
    """READY=1 with counts after start, WATCHDOG=1 from the loop, SIGHUP reload
    (and refusal), STOPPING=1: the datagrams ovslited sends to $NOTIFY_SOCKET."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    br = f"svt{os.getpid() % 100000}"
    db = tmp_path / "conf.db"
    db.write_text(_db({br: _bridge(br)}))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000",
           "PYTHONPATH": str(nspawn.REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "ovslite", "--db", str(db), "--socket",
                             str(tmp_path / "s.sock")], env=env, stderr=subprocess.PIPE, text=True)
    got: list[bytes] = []

    def until(prefix: bytes) -> bytes:
        while True:
            msg = notify.recv(4096)
            got.append(msg)
            if msg.startswith(prefix):
                return msg

    try:
        assert until(b"READY=1") == b"READY=1\nSTATUS=1 bridges, 1 ports\n"
        t0 = time.monotonic()
        until(b"WATCHDOG=1")
        until(b"WATCHDOG=1")
        assert time.monotonic() - t0 < 2  # every 0.2 s (half of WATCHDOG_USEC)
        db.write_text("not json")
        proc.send_signal(signal.SIGHUP)
        assert until(b"RELOADING=1").startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        msg = until(b"READY=1").decode()
        assert msg.startswith("READY=1\nSTATUS=1 bridges, 1 ports; reload refused: "), msg
        db.write_text(_db({}))
        proc.send_signal(signal.SIGHUP)
        until(b"RELOADING=1")
        assert until(b"READY=1") == b"READY=1\nSTATUS=0 bridges, 0 ports\n"
        proc.send_signal(signal.SIGTERM)
        assert until(b"STOPPING=1") == b"STOPPING=1\nSTATUS=stopping\n"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        err = proc.stderr.read()
    assert Path(f"/sys/class/net/{br}").exists() is False, "bridge TAP left behind"
    assert "reload refused, keeping the running configuration" in err, err

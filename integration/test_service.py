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
import uuid
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
#: its STATUS=: br0, the bridge's own internal port, is down until someone
#: brings the interface up (the link monitor reports it)
START_STATUS = "1 bridges, 2 ports (1 down)"


# -- the container -------------------------------------------------------------

@pytest.fixture(scope="module")
def box(tmp_path_factory):
    why = nspawn.ready()
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
    assert full["StatusText"] == START_STATUS, p
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
    box.run(f"{VENV}/bin/ovslite-ctl", "add-br", "br9")
    try:
        box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "2 bridges, 3 ports (2 down)",
                     what="STATUS after add-br")
    finally:
        box.run(f"{VENV}/bin/ovslite-ctl", "del-br", "br9")
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == START_STATUS,
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
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == "2 bridges, 3 ports (2 down)",
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
        assert p["StatusText"].startswith("2 bridges, 3 ports (2 down); reload refused:"), p
        assert "reload refused, keeping the running configuration" in journal(box, mark)
        assert re.search(r"\bbr1:", box.run("ip", "-o", "link").stdout), "br1 lost"
    finally:
        write_db(box, START_DB)
    box.run("systemctl", "reload", UNIT)
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == START_STATUS,
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
        assert status == "1 bridges, 4 ports (1 down)", f"{status}\n{journal(box)[-3000:]}"
        addr = box.run("ip", "-n", "ctr1", "-o", "addr", "show", "dev", "eth0").stdout
        assert "10.77.0.2/24" in addr, addr
        addr = box.run("nsenter", "-t", pid, "-n", "ip", "-o", "addr", "show", "dev", "eth1").stdout
        assert "10.77.0.3/24" in addr, addr
        # frames flow between the two namespaces through the daemon's bridge
        box.run("ip", "netns", "exec", "ctr1", "ping", "-c", "2", "-W", "2", "10.77.0.3", timeout=30)
    finally:
        write_db(box, START_DB)
        box.run("systemctl", "reload", UNIT, check=False)
        box.wait_for(lambda: props(box, "StatusText")["StatusText"] == START_STATUS,
                     what="netns ports removed")
        box.run("ip", "netns", "del", "ctr1", check=False)
        box.run("kill", pid, check=False)


def test_restart_keeps_configuration(box):
    p = ensure_active(box)
    box.run("systemctl", "restart", UNIT, timeout=120)
    q = wait_active(box, other_than_pid=p["MainPID"])
    assert q["StatusText"] == START_STATUS, q
    assert json.loads(box.run("cat", DB).stdout)["bridges"].keys() == START_DB.keys()
    links = box.run("ip", "-o", "link").stdout
    assert re.search(r"\bbr0:", links), links


def test_kill_9_is_restarted(box):
    p = ensure_active(box)
    restarts = int(p["NRestarts"])
    box.run("kill", "-9", p["MainPID"])
    q = wait_active(box, other_than_pid=p["MainPID"])
    assert int(q["NRestarts"]) == restarts + 1, q
    assert q["StatusText"] == START_STATUS, q


# -- restarts keep the ports (ovslite.handover via the fd store) ------------------

FLOW = "/src/integration/flow.py"
#: the issue's first target for frames lost in `systemctl restart` at 10,000 frames/s
LOSS_TARGET = 500
#: brx: n1 and n2 (veth ends hv1, hv2), the host's internal port brx addressed
#: by hand, and cx, an internal port that is eth0 in namespace c1
FLOW_DB = {**START_DB,
           "brx": _bridge("brx", hv1=("system", {}), hv2=("system", {}),
                          cx=("internal", {"netns": "c1", "ifname": "eth0", "ip": "10.88.0.3/24"}))}
FLOW_STATUS = "2 bridges, 6 ports (1 down)"  # br0 down, brx up
#: br0, brx, cx (TAPs): one fd each; veth0, hv1, hv2: a spill and a ring socket each
FLOW_FDS = 9


@pytest.fixture(scope="module")
def flow_net(box):
    """n1 -- hv1 [brx] hv2 -- n2 and c1 (cx) inside the container; torn down after."""
    ensure_active(box)
    box.sh("""
        for i in 1 2; do
          ip netns add n$i
          ip link add hv$i type veth peer name eth0 netns n$i
          ip -n n$i addr add 10.88.0.$i/24 dev eth0
          ip -n n$i link set eth0 up
          ip netns exec n$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
          sysctl -qw net.ipv6.conf.hv$i.disable_ipv6=1 || true
        done
        ip netns add c1
        ip netns exec c1 sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    """)
    write_db(box, FLOW_DB)
    box.run("systemctl", "reload", UNIT)
    box.wait_for(lambda: props(box, "StatusText")["StatusText"].startswith("2 bridges, 6 ports"),
                 what="STATUS with brx")
    box.sh("sysctl -qw net.ipv6.conf.brx.disable_ipv6=1 || true; "
           "ip addr add 10.88.0.254/24 dev brx && ip link set brx up")  # what a user does
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == FLOW_STATUS,
                 what=f"STATUS {FLOW_STATUS}")
    box.run("ip", "netns", "exec", "n2", "ping", "-c", "1", "-W", "2", "10.88.0.1")  # learn n2
    try:
        yield box
    finally:
        ensure_active(box)
        write_db(box, START_DB)
        box.run("systemctl", "reload", UNIT, check=False)
        box.wait_for(lambda: props(box, "StatusText")["StatusText"] == START_STATUS,
                     what="STATUS back to the start configuration")
        box.sh("for ns in n1 n2 c1; do ip netns del $ns || true; done", check=False)


def devices(box) -> dict:
    """What must not change across a restart: ifindex, MAC and addresses of brx and c1's eth0."""
    def dev(ns: str | None, name: str):
        cmd = ["ip", "-j", "addr", "show", "dev", name]
        if ns:
            cmd[1:1] = ["-n", ns]
        info = json.loads(box.run(*cmd).stdout)[0]
        return (info["ifindex"], info["address"], "UP" in info["flags"],
                sorted(f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"]
                       if a["family"] == "inet"))
    return {"brx": dev(None, "brx"), "c1/eth0": dev("c1", "eth0")}


def measure_loss(box, action, seconds: float = 6.0, at: float = 2.0, tail: float = 3.0,
                 sender: str = "n1", receiver: str = "n2", sender_if: str = "eth0",
                 receiver_if: str = "eth0") -> dict:
    """10,000 frames/s from `sender` (a namespace: eth0 is brx's port) to
    `receiver` for `seconds`; `action()` at `at`."""
    run_tag = uuid.uuid4().hex[:8]
    mac = box.run("ip", "netns", "exec", receiver, "cat",
                  f"/sys/class/net/{receiver_if}/address").stdout.strip()
    counter = subprocess.Popen(
        box.exec_cmd("ip", "netns", "exec", receiver, "python3", FLOW, "count", receiver_if, run_tag,
                     str(seconds + tail + 1)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert counter.stdout.readline().strip() == "counting", counter.stderr.read()
        sender = subprocess.Popen(
            box.exec_cmd("ip", "netns", "exec", sender, "python3", FLOW, "send", sender_if, mac,
                         run_tag, "10000", str(seconds)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(at)
        t0 = time.monotonic()
        action()
        took = time.monotonic() - t0
        out, err = sender.communicate(timeout=seconds + 60)
        assert sender.returncode == 0, err
        sent = json.loads(out)
        out, err = counter.communicate(timeout=tail + 30)
        assert counter.returncode == 0, err
    finally:
        for proc in (counter,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = json.loads(out.strip().splitlines()[-1])
    return {**sent, **got, "lost": sent["sent"] - got["distinct"], "took": took}


def report(what: str, r: dict) -> str:
    return (f"{what} under {r['sent'] / r['seconds']:.0f} frames/s: {r['lost']} of {r['sent']} "
            f"frames lost, {r['duplicates']} duplicated, {r['reordered']} out of order "
            f"(action took {r['took']:.2f}s; missing runs {r['missing'][:5]})")


def test_restart_keeps_internal_ports_and_loses_few_frames(flow_net):
    """`systemctl restart`: the TAPs stay (same ifindex, MAC, addresses, namespace)
    and frames arriving meanwhile are forwarded afterwards."""
    box = flow_net
    p = ensure_active(box)
    box.wait_for(lambda: props(box, "NFileDescriptorStore")["NFileDescriptorStore"] == str(FLOW_FDS),
                 what=f"{FLOW_FDS} fds in the fd store")
    before = devices(box)
    mark = cursor(box)
    r = measure_loss(box, lambda: box.run("systemctl", "restart", UNIT, timeout=120))
    print("\n" + report("systemctl restart", r), file=sys.stderr)
    wait_active(box, other_than_pid=p["MainPID"])
    assert devices(box) == before, "brx or c1's eth0 changed across the restart"
    log = journal(box, mark)
    print("\n".join(line for line in log.splitlines() if "re-attached" in line or "handed" in line),
          file=sys.stderr)
    assert '"reattached": 6' in log, log[-3000:]
    assert r["counter_drops"] == 0, f"the counter itself dropped frames: {r}"
    assert r["sent"] >= 50000, r
    assert r["lost"] < LOSS_TARGET, report("systemctl restart", r)
    box.run("ip", "netns", "exec", "n1", "ping", "-c", "2", "-W", "2", "10.88.0.254")
    box.run("ip", "netns", "exec", "n1", "ping", "-c", "2", "-W", "2", "10.88.0.3")
    box.wait_for(lambda: props(box, "StatusText")["StatusText"] == FLOW_STATUS, what=FLOW_STATUS)
    box.wait_for(lambda: props(box, "NFileDescriptorStore")["NFileDescriptorStore"] == str(FLOW_FDS),
                 what="the fd store back to all the ports' fds once drained")


def test_restart_loses_no_frame_from_a_container(flow_net):
    """`systemctl restart` with 10,000 frames/s from c1's eth0 (cx, an internal
    port: a TAP) to n2: they wait in the TAP's queue, made long for the restart."""
    box = flow_net
    p = ensure_active(box)
    stats = ["ip", "-n", "c1", "-s", "-j", "link", "show", "eth0"]
    dropped = json.loads(box.run(*stats).stdout)[0]["stats64"]["tx"]["dropped"]
    r = measure_loss(box, lambda: box.run("systemctl", "restart", UNIT, timeout=120), sender="c1")
    dropped = json.loads(box.run(*stats).stdout)[0]["stats64"]["tx"]["dropped"] - dropped
    print("\n" + report("systemctl restart, container (TAP)", r) + f"; the TAP dropped {dropped}",
          file=sys.stderr)
    wait_active(box, other_than_pid=p["MainPID"])
    assert r["counter_drops"] == 0 and r["send_errors"] == 0, r
    assert r["sent"] >= 50000, r
    assert r["lost"] == 0 and dropped == 0, report("systemctl restart, container (TAP)", r)


def test_kill_9_keeps_ports(flow_net):
    """A crash (SIGKILL, Restart=on-failure): the ports stay, traffic resumes by
    itself, and the frames that arrived meanwhile wait in the abandoned ring
    and the spill socket (both in the fd store) for the next instance."""
    box = flow_net
    p = ensure_active(box)
    before = devices(box)
    mark = cursor(box)
    r = measure_loss(box, lambda: box.run("kill", "-9", p["MainPID"]), seconds=8.0)
    print("\n" + report("kill -9 (restart after RestartSec=)", r), file=sys.stderr)
    q = wait_active(box, other_than_pid=p["MainPID"])
    reattached = [line for line in journal(box, mark).splitlines() if "port re-attached" in line]
    print("\n".join(reattached), file=sys.stderr)
    assert any('"abandoned_ring": true' in line and '"hv1"' in line for line in reattached), \
        "hv1's ring socket did not outlive the crash in the fd store"
    assert int(q["NRestarts"]) == int(p["NRestarts"]) + 1, q
    assert devices(box) == before, "brx or c1's eth0 changed across the crash"
    assert r["counter_drops"] == 0, r
    assert r["highest"] >= r["sent"] - 100, f"traffic did not resume: {r}"
    assert r["lost"] < LOSS_TARGET, report("kill -9", r)
    box.run("ip", "netns", "exec", "n1", "ping", "-c", "2", "-W", "2", "10.88.0.3")


def test_del_port_and_stop_remove_the_taps(flow_net):
    """del-port drops the port's fds from the store (its TAP goes at once);
    `systemctl stop` empties the store: every TAP goes, as without systemd."""
    box = flow_net
    ensure_active(box)
    box.run(f"{VENV}/bin/ovslite-ctl", "del-port", "brx", "cx")
    gone = box.run("ip", "-n", "c1", "link", "show", "eth0", check=False)
    assert gone.returncode != 0, "c1's eth0 outlived del-port"
    box.wait_for(lambda: props(box, "NFileDescriptorStore")["NFileDescriptorStore"]
                 == str(FLOW_FDS - 1), what="one fd fewer in the store")
    box.run("systemctl", "stop", UNIT, timeout=120)
    try:
        assert props(box, "NFileDescriptorStore")["NFileDescriptorStore"] == "0"
        links = box.run("ip", "-o", "link").stdout
        assert not re.search(r"\b(brx|br0):", links), f"TAPs outlived systemctl stop:\n{links}"
        assert re.search(r"\bhv1@", links), links  # system ports are not ours to remove
    finally:
        box.run("systemctl", "start", UNIT, timeout=120)
    write_db(box, FLOW_DB)  # del-port saved a database without cx
    box.run("systemctl", "reload", UNIT)


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
        assert until(b"READY=1") == b"READY=1\nSTATUS=1 bridges, 1 ports (1 down)\n"
        t0 = time.monotonic()
        until(b"WATCHDOG=1")
        until(b"WATCHDOG=1")
        assert time.monotonic() - t0 < 2  # every 0.2 s (half of WATCHDOG_USEC)
        db.write_text("not json")
        proc.send_signal(signal.SIGHUP)
        assert until(b"RELOADING=1").startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        msg = until(b"READY=1").decode()
        assert msg.startswith("READY=1\nSTATUS=1 bridges, 1 ports (1 down); reload refused: "), msg
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

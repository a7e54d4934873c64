"""ovslite-ctl: argument errors, unreachable daemon, and the commands against a server."""

from __future__ import annotations

import json
import os
import socket

import pytest
import structlog
from click.testing import CliRunner
from helpers import TYPE, CtlRunner, one_line_error

from ovslite_ctl.cli import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture
def nowhere(tmp_path):
    return ["--socket", str(tmp_path / "absent.sock")]


# -- usage errors (exit 2), checked before connecting -----------------------------------


@pytest.mark.parametrize("args,text", [
    ([], "missing command name"),
    (["frobnicate"], "No such command"),
    (["add-br"], "add-br: Missing argument"),
    (["add-br", "b" * 16], "longer than 15 bytes"),
    (["add-br", "a/b"], "contains '/'"),
    (["add-br", "a b"], "contains ' '"),
    (["add-br", ""], "empty"),
    (["del-br", "x:y"], "contains ':'"),
    (["add-port", "br0", "p" * 20], "invalid port name"),
    (["add-port", "br0", "p1", "-o", "novalue"], "invalid option 'novalue': expected key=value"),
    (["add-port", "br0", "p1", "-o", "=v"], "expected key=value"),
    (["add-port", "br0", "p1", "-o", "a=1", "--option", "a=2"], "option 'a' given more than once"),
    (["del-port", "a", "b", "c"], "expected [BRIDGE] IFACE"),
    (["del-port"], "Missing argument"),
    (["--may-exist", "del-br", "br0"], "'del-br' command has no '--may-exist' option"),
    (["--if-exists", "add-br", "br0"], "'add-br' command has no '--if-exists' option"),
    (["--format", "xml", "list-br"], "'xml' is not one of"),
    (["--timeout", "-1", "list-br"], "--timeout"),
    (["list-ports", "b" * 16], "invalid bridge name"),
    (["fdb-show"], "Missing argument"),
    (["fdb-show", "br0", "--vlan", "4095"], "'--vlan'"),
    (["set-port", "p1"], "set-port: Missing argument 'KEY=VALUE...'"),
    (["set-port", "p1", "tag"], "invalid setting 'tag': expected key=value"),
    (["set-port", "p1", "tag=1", "tag=2"], "setting 'tag' given more than once"),
    (["set-port", "p1", "color=red"], "unknown port setting 'color'"),
    (["set-port", "p1", "tag=x"], "tag: 'x' is not a VLAN number"),
    (["set-port", "p1", "trunks=30-20"], "runs backwards"),
    (["set-port", "p1", "vlan-mode=sideways"], "vlan-mode: expected one of"),
    (["set-port", "p1", "learning=maybe"], "learning: expected on or off"),
    (["set-port", "p1", "admin=sleeping"], "admin: expected up or down"),
    (["set-port", "p1", "mtu=20"], "mtu: 20 is out of range"),
    (["set-port", "p" * 16, "tag=1"], "invalid port name"),
    (["add-port", "br0", "p1", "vlan-mode=access"], "vlan-mode access needs a tag"),
    (["add-port", "br0", "p1", "tag=5000"], "out of range"),
    (["set-br", "br0"], "Missing argument"),
    (["set-br", "br0", "color=1"], "unknown bridge setting 'color'"),
    (["set-br", "br0", "mac-aging-time=soon"], "mac-aging-time: 'soon' is not a number"),
    (["set-br", "br0", "mac-aging-time=nan"], "must be positive"),
    (["set-br", "br0", "mac-table-size=0"], "must be positive"),
    (["set-br", "br0", "mac-table-size=1.5"], "is not a number"),
    (["fdb-add", "br0", "02:00:00:00:00:01"], "Missing argument 'PORT'"),
    (["fdb-add", "br0", "02:00:00:00:00:zz", "p1"], "invalid MAC address '02:00:00:00:00:zz'"),
    (["fdb-add", "br0", "02:00:00:00:01", "p1"], "invalid MAC address"),
    (["fdb-add", "br0", "02:00:00:00:00:01", "p1", "--vlan", "-1"], "'--vlan'"),
    (["fdb-del", "br0", "nope"], "invalid MAC address 'nope'"),
    (["fdb-flush", "br0", "--port", "a/b"], "contains '/'"),
    (["fdb-stats"], "Missing argument"),
])
def test_usage_errors(nowhere, args, text):
    one_line_error(run(*nowhere, *args), 2, text)


def test_help_and_version():
    r = run("--help")
    assert r.exit_code == 0 and "add-port" in r.stdout and "Exit status" in r.stdout
    r = run("add-port", "--help")
    assert r.exit_code == 0 and "KEY=VALUE" in r.stdout
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith("ovslite-ctl ")


# -- daemon not reachable (exit 1) ---------------------------------------------------------


@pytest.mark.parametrize("args", [["list-br"], ["add-br", "br0"], ["show"], ["del-port", "p1"]])
def test_daemon_not_running(tmp_path, args):
    path = str(tmp_path / "absent.sock")
    line = one_line_error(run("--socket", path, *args), 1, f"cannot connect to ovslited at {path}")
    assert "No such file or directory" in line and "is ovslited running?" in line


def test_stale_socket_is_connection_refused(sockdir):
    path = os.path.join(sockdir, "ctl.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(path)
    dead.close()
    one_line_error(run("--socket", path, "list-br"), 1, "Connection refused")
    # and the socket comes from OVSLITE_SOCKET when --socket is not given
    one_line_error(run("list-br", env={"OVSLITE_SOCKET": path}), 1, path)


def test_daemon_that_does_not_answer_times_out(sockdir):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        path = os.path.join(sockdir, "ctl.sock")
        mute.bind(path)
        mute.listen(1)
        one_line_error(run("--socket", path, "--timeout", "0.2", "list-br"), 1,
                       "no reply from ovslited within 0.2 s")
    finally:
        mute.close()


# -- against a running server -------------------------------------------------------------


@pytest.fixture
def server(daemon):
    """ovslite-ctl against conftest.py's daemon, whose clock reads 50.0."""
    daemon.now = 50.0
    # The server thread logs; keep that out of the CLI output CliRunner captures.
    with structlog.testing.capture_logs():
        yield CtlRunner(daemon)


def test_bridge_and_port_lifecycle(server):
    assert server("add-br", "br0").stdout == ""
    server("add-br", "br1")
    assert server("list-br").stdout == "br0\nbr1\n"
    assert json.loads(server("--format", "json", "list-br").stdout) == ["br0", "br1"]
    server("add-port", "br0", "p2", "--type", TYPE)
    server("add-port", "br0", "p1", "--type", TYPE, "-o", "peer=x=y")
    assert server("list-ports", "br0").stdout == "p1\np2\n"  # not the local port br0
    assert server("list-ports", "br1").stdout == ""
    assert server.switch.port_config(server.switch.port("p1"))["options"] == {"peer": "x=y"}
    server("del-port", "br0", "p1")
    server("del-port", "p2")
    assert server("list-ports", "br0").stdout == ""
    server("del-br", "br1")
    assert server("list-br").stdout == "br0\n"


def test_daemon_refusals_are_one_line_exit_1(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)
    cases = [
        (["add-br", "br0"], "ovslite-ctl: bridge br0 already exists"),
        (["del-br", "nope"], "ovslite-ctl: no bridge named nope"),
        (["list-ports", "nope"], "no bridge named nope"),
        (["fdb-show", "nope"], "no bridge named nope"),
        (["dump-ports", "nope"], "no bridge named nope"),
        (["add-port", "nope", "p2", "--type", TYPE], "no bridge named nope"),
        (["add-port", "br0", "p1", "--type", TYPE], "already exists"),
        (["add-port", "br0", "missing0", "--type", TYPE], "interface 'missing0' does not exist"),
        (["add-port", "br0", "p3", "--type", "bogus"], "unknown port type 'bogus'"),
        (["add-port", "br0", "p3", "--type", TYPE, "-o", "zap=1"], "has no option 'zap'"),
        (["del-port", "p9"], "no port named p9"),
        (["del-port", "nope", "p1"], "no port named p1 on bridge nope"),
        (["del-port", "br0", "br0"], "local port"),
        (["add-br", "p1"], "already a port"),
    ]
    for args, text in cases:
        one_line_error(server(*args, code=1), 1, text)
    assert server("list-br").stdout == "br0\n"


def test_may_exist_and_if_exists_in_both_places(server):
    server("add-br", "br0")
    server("add-br", "br0", "--may-exist")
    server("--may-exist", "add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)
    server("add-port", "--may-exist", "br0", "p1", "--type", TYPE)
    server("--may-exist", "add-port", "br0", "p1", "--type", TYPE)
    server("del-port", "--if-exists", "br0", "p9")
    server("--if-exists", "del-port", "p9")
    server("del-br", "--if-exists", "nope")
    server("--if-exists", "del-br", "nope")
    assert server("list-ports", "br0").stdout == "p1\n"


def test_show(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE, "-o", "peer=x")
    server("add-port", "br0", "p2", "--type", TYPE)
    server.call(lambda: server.switch.set_state(server.switch.port("p2"), False, "no carrier"))
    assert server("show").stdout == (
        "Bridge br0\n"
        "    Port br0\n"
        "        type: internal\n"
        "        state: up\n"
        "    Port p1\n"
        f"        type: {TYPE}\n"
        "        state: up\n"
        "        options: {peer=x}\n"
        "    Port p2\n"
        f"        type: {TYPE}\n"
        "        state: down (no carrier)\n"
        'ovslite_version: "0.1.0"\n'
    )
    doc = json.loads(server("--format", "json", "show").stdout)
    (br,) = doc["bridges"]
    assert br["name"] == "br0"
    assert br["ports"][2] == {"name": "p2", "type": TYPE, "number": 3, "up": False,
                              "reason": "no carrier", "options": {}, "settings": {}}


def test_fdb_show(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)
    server("add-port", "br0", "longportname1", "--type", TYPE)

    def learn():
        br = server.switch.bridge("br0")
        br.macs.learn(0, bytes.fromhex("505400000001"), server.switch.port("p1"), 47.0)
        br.macs.add_static(10, bytes.fromhex("505400000002"),
                           server.switch.port("longportname1"), 1.0)

    server.call(learn)
    assert server("fdb-show", "br0").stdout == (
        "          port  VLAN  MAC                Age\n"
        "            p1     0  50:54:00:00:00:01    3\n"
        " longportname1    10  50:54:00:00:00:02  static\n"
    )
    assert json.loads(server("--format", "json", "fdb-show", "br0").stdout) == [
        {"port": "p1", "port_no": 2, "vlan": 0, "mac": "50:54:00:00:00:01", "age": 3,
         "static": False},
        {"port": "longportname1", "port_no": 3, "vlan": 10, "mac": "50:54:00:00:00:02",
         "age": 49, "static": True},
    ]


def test_dump_ports(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)

    def count():
        s = server.switch.port("p1").stats
        s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes = 10, 1000, 8, 800
        s.drop("runt", 2)
        s.drop("tx-failed", 1, tx=True)

    server.call(count)
    assert server("dump-ports", "br0").stdout == (
        "bridge br0: 2 ports\n"
        "  port 1 (br0): rx pkts=0, bytes=0, drop=0, errs=0\n"
        "                tx pkts=0, bytes=0, drop=0, errs=0\n"
        "  port 2 (p1): rx pkts=10, bytes=1000, drop=2, errs=0\n"
        "               tx pkts=8, bytes=800, drop=1, errs=0\n"
        "               drops: runt=2, tx-failed=1\n"
    )
    ports = json.loads(server("--format", "json", "dump-ports", "br0").stdout)
    assert ports[1]["name"] == "p1" and ports[1]["bridge"] == "br0"
    assert ports[1]["stats"]["tx_dropped"] == 1 and ports[1]["stats"]["drops"]["runt"] == 2


def test_set_port_set_br_and_show(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE, "tag=10", "learning=off")
    server("add-port", "br0", "p2", "--type", TYPE)
    assert server("set-port", "p2", "vlan-mode=native-untagged", "tag=5", "trunks=7,20-22",
                  "admin=down", "mtu=1400", "storm-control=100", "flood=on").stdout == ""
    server("set-port", "p1", "learning=", "isolated=on")
    server("set-br", "br0", "mac-aging-time=30.5", "mac-table-size=100")
    assert server("show").stdout == (
        "Bridge br0\n"
        "    mac-aging-time: 30.5\n"
        "    mac-table-size: 100\n"
        "    Port br0\n"
        "        type: internal\n"
        "        state: up\n"
        "    Port p1\n"
        f"        type: {TYPE}\n"
        "        state: up\n"
        "        tag: 10\n"
        "        isolated: on\n"
        "    Port p2\n"
        f"        type: {TYPE}\n"
        "        state: down (administratively down)\n"
        "        tag: 5\n"
        "        trunks: 7,20-22\n"
        "        vlan-mode: native-untagged\n"
        "        admin: down\n"
        "        mtu: 1400\n"
        "        storm-control: 100\n"
        'ovslite_version: "0.1.0"\n'
    )
    (br,) = json.loads(server("--format", "json", "show").stdout)["bridges"]
    assert br["settings"] == {"mac-aging-time": "30.5", "mac-table-size": "100"}
    assert br["ports"][1]["settings"] == {"tag": "10", "isolated": "on"}
    server("set-br", "br0", "mac-aging-time=")
    assert server.switch.bridge("br0").macs.aging == 300.0
    p2 = json.loads(server("--format", "json", "dump-ports", "br0").stdout)[2]
    assert p2["settings"]["mtu"] == "1400" and p2["reason"] == "administratively down"


def test_config_refusals_are_one_line_exit_1(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)
    cases = [
        (["set-port", "p9", "tag=1"], "ovslite-ctl: no port named p9"),
        (["set-port", "p1", "vlan-mode=access"], "port p1: vlan-mode access needs a tag"),
        (["set-port", "p1", "tag=3", "vlan-mode=trunk"], "vlan-mode trunk takes no tag"),
        (["set-br", "nope", "mac-table-size=5"], "no bridge named nope"),
        (["add-port", "br0", "p1", "--type", TYPE, "tag=3"], "already exists"),
        (["fdb-add", "br0", "02:00:00:00:00:01", "p9"], "no port named p9 on bridge br0"),
        (["fdb-add", "br0", "01:00:5e:00:00:01", "p1"], "01:00:5e:00:00:01 is a group address"),
        (["fdb-add", "nope", "02:00:00:00:00:01", "p1"], "no bridge named nope"),
        (["fdb-del", "br0", "02:00:00:00:00:01"], "no entry for 02:00:00:00:00:01 in any VLAN"),
        (["fdb-del", "br0", "02:00:00:00:00:01", "--vlan", "0"],
         "no entry for 02:00:00:00:00:01 in VLAN 0"),
        (["fdb-flush", "br0", "--port", "p9"], "no port named p9 on bridge br0"),
        (["fdb-stats", "nope"], "no bridge named nope"),
        (["fdb-show", "nope", "--vlan", "3"], "no bridge named nope"),
    ]
    for args, text in cases:
        one_line_error(server(*args, code=1), 1, text)
    assert server.switch.port("p1").settings == {}


def test_fdb_commands(server):
    server("add-br", "br0")
    server("add-port", "br0", "p1", "--type", TYPE)
    server("add-port", "br0", "p2", "--type", TYPE)
    assert server("fdb-add", "br0", "02-00-00-00-00-AA", "p1", "--vlan", "10").stdout == ""
    server("fdb-add", "br0", "2:0:0:0:0:bb", "p2")

    def learn():
        br = server.switch.bridge("br0")
        br.macs.learn(0, bytes.fromhex("505400000001"), server.switch.port("p1"), 47.0)
        br.macs.learn(10, bytes.fromhex("505400000002"), server.switch.port("p2"), 40.0)

    server.call(learn)
    assert server("fdb-show", "br0", "--vlan", "10").stdout == (
        " port  VLAN  MAC                Age\n"
        "   p1    10  02:00:00:00:00:aa  static\n"
        "   p2    10  50:54:00:00:00:02   10\n"
    )
    assert len(json.loads(server("--format", "json", "fdb-show", "br0").stdout)) == 4
    assert server("fdb-stats", "br0").stdout == (
        'Statistics for bridge "br0":\n'
        "  Current/maximum learned MAC entries     : 2/8192\n"
        "  Current static MAC entries in the table : 2\n"
        "  Total number of learned MAC entries     : 2\n"
        "  Total number of expired MAC entries     : 0\n"
        "  Total number of evicted MAC entries     : 0\n"
        "  Total number of port moved MAC entries  : 0\n"
        "  MAC aging time in seconds               : 300\n"
    )
    stats = json.loads(server("--format", "json", "fdb-stats", "br0").stdout)
    assert stats == {"bridge": "br0", "entries": 4, "static": 2, "learned": 2, "moved": 0,
                     "aged": 0, "evicted": 0, "max_entries": 8192, "aging_time": 300.0}
    assert server("fdb-flush", "br0", "--port", "p2").stdout == "1 MAC entry flushed\n"
    assert json.loads(server("--format", "json", "fdb-flush", "br0").stdout) == {
        "bridge": "br0", "port": None, "flushed": 1}
    assert server("fdb-flush", "br0").stdout == "0 MAC entries flushed\n"
    server("fdb-del", "br0", "02:00:00:00:00:aa", "--vlan", "10")
    assert [e["mac"] for e in json.loads(server("--format", "json", "fdb-show", "br0").stdout)] \
        == ["02:00:00:00:00:bb"]


def test_version_command(server):
    assert server("version").stdout == "ovslite-ctl 0.1.0\novslited 0.1.0 (protocol 1)\n"
    assert json.loads(server("--format", "json", "version").stdout)["protocol"] == 1

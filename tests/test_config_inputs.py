"""Configuration input at every door: the control protocol, options that name things,
ovslite-ctl before it sends, and the forward-bpdu bridge setting."""

from __future__ import annotations

import errno
import json

import pytest
import structlog
from click.testing import CliRunner
from helpers import TYPE, CtlRunner, one_line_error
from test_control_server import raw_conn

from ovslite import confcheck
from ovslite.control import messages as m
from ovslite.control.messages import Cmd
from ovslite.db import ConfigDB
from ovslite.netdev.internal import InternalNetdev
from ovslite_ctl.cli import cli

ITEM, KEY, VALUE = m.kvlist.item_attrs


def add_port_with_items(port: str, items: list[list[tuple]], seq: int = 5) -> bytes:
    """An ADD_PORT whose options are `items`, each a list of (KEY or VALUE, text):
    what a client other than ovslite-ctl may send."""
    msg = m.ovslitemsg()
    msg["cmd"] = int(Cmd.ADD_PORT)
    msg["version"] = m.OVSLITE_PROTOCOL_VERSION
    options = {"attrs": [(ITEM, {"attrs": item}) for item in items]}
    msg["attrs"] = [("OVSLITE_ATTR_BRIDGE", "br0"), ("OVSLITE_ATTR_PORT", port),
                    ("OVSLITE_ATTR_TYPE", TYPE), ("OVSLITE_ATTR_OPTIONS", options)]
    msg["header"]["type"] = m.OVSLITE_FAMILY
    msg["header"]["flags"] = m.NLM_F_REQUEST | m.NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize("items, text", [
    ([[(VALUE, "x")], [(KEY, "zzz"), (VALUE, "1")]], "option without a name"),
    ([[(KEY, "color")]], "option color: None is not a string"),
    ([[(KEY, "zzz"), (VALUE, "1")]], "has no option 'zzz'"),
])
def test_malformed_options_are_einval_not_eio_and_change_nothing(daemon, items, text):
    """Before: a keyless item next to an unknown key got EIO "'<' not supported
    between instances of 'NoneType' and 'str'"."""
    with daemon.client() as c:
        c.add_bridge("br0")
    before = open(daemon.switch.db.path, "rb").read()
    s = raw_conn(daemon.path)
    try:
        s.send(add_port_with_items("p1", items))
        reply = m.decode_reply(s.recv(m.MAX_MSG_SIZE))
    finally:
        s.close()
    assert reply.kind == "error" and reply.errno == errno.EINVAL, reply
    assert text in reply.message and "\n" not in reply.message
    assert open(daemon.switch.db.path, "rb").read() == before
    with daemon.client() as c:
        c.add_bridge("br1")  # and the configuration is not stuck
        assert sorted(b["name"] for b in c.bridges()) == ["br0", "br1"]


@pytest.mark.parametrize("options, text", [
    ({"netns_pid": ""}, "netns_pid: '' is not a process id"),
    ({"netns_pid": "12x"}, "is not a process id"),
    ({"netns_pid": "0"}, "is not a process id"),
    ({"netns_pid": "99999999"}, "is not a process id"),
    ({"netns_pid": None}, "option netns_pid: None is not a string"),
    ({"netns": "a/b"}, "invalid network namespace name"),
    ({"netns": ".."}, "invalid network namespace name"),
    ({"netns": "ns1", "netns_pid": "1"}, "not both"),
    ({"netns": "ns1", "ifname": "eth%d"}, "contains '%'"),
    ({"netns": "ns1", "ifname": "x" * 16}, "longer than 15 bytes"),
    ({"ifname": "eth0"}, "--ifname needs --netns"),
    ({"ip": "10.0.0.2"}, "give a prefix length"),
    ({"ip": "10.0.0.300/24"}, "10.0.0.300/24"),
    ({"gateway": "nope"}, "nope"),
    ({"mtu": "9000"}, "has no option 'mtu'"),
])
def test_internal_port_options_refused_before_anything_is_made(options, text):
    """Before: an empty netns_pid reached int(None) (EIO, then a stuck configuration;
    in the database a 32-line traceback)."""
    with pytest.raises(ValueError) as exc:
        confcheck.check_options("c1", "internal", options)
    assert text in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith("port c1: ")


def test_internal_port_options_that_are_fine():
    for options in ({}, {"netns": "ns1", "ifname": "eth0", "ip": "10.0.0.2/24",
                         "gateway": "10.0.0.1"}, {"netns_pid": "4194303"}):
        InternalNetdev.check_options("c1", options)


@pytest.mark.parametrize("options, text", [
    ({"peer": "x" * 16}, "longer than 15 bytes"),
    ({"peer": "tap%d"}, "contains '%'"),
    ({"peer": "a b"}, "contains ' '"),
    ({"peer": "p1"}, "cannot be its own peer"),
    ({}, "needs a peer"),
    ({"peer": "p2", "color": "red"}, "has no option 'color'"),
])
def test_patch_peer_is_a_name_like_any_other(options, text):
    """Before: --peer took a 16-byte name no port can ever have."""
    with pytest.raises(ValueError, match=text):
        confcheck.check_options("p1", "patch", options)


# -- ovslite-ctl: names refused before anything is sent (exit 2, one line) -------------


@pytest.mark.parametrize("args, text", [
    (["add-br", "br%d"], "contains '%'"),
    (["add-port", "br0", "tap%d", "--type", "tap"], "contains '%'"),
    (["add-port", "br0", "p1", "--type", "patch", "--peer", "x" * 16], "invalid peer name"),
    (["add-port", "br0", "p1", "--type", "patch", "-o", "peer=a%d"], "contains '%'"),
    (["add-port", "br0", "c1", "--type", "internal", "--netns", "n", "--ifname", "e th0"],
     "invalid ifname name"),
    (["add-port", "br0", "c1", "--type", "internal", "--netns", "a/b"],
     "invalid network namespace name"),
    (["fdb-add", "br0", "02:00:00:00:00:01", "p%d"], "contains '%'"),
    (["set-br", "br0", "forward-bpdu=maybe"], "forward-bpdu: expected on or off"),
    (["set-br", "br0", "mac-aging-time=inf"], "must be positive"),
])
def test_cli_refuses_bad_names_and_values_before_sending(tmp_path, args, text):
    result = CliRunner().invoke(cli, ["--socket", str(tmp_path / "absent.sock"), *args])
    one_line_error(result, 2, text)


# -- forward-bpdu -------------------------------------------------------------------------


@pytest.fixture
def server(daemon):
    daemon.now = 50.0
    with structlog.testing.capture_logs():
        yield CtlRunner(daemon)


def test_forward_bpdu_is_stored_applied_shown_and_reset(server, daemon):
    server("add-br", "br0")
    br = daemon.switch.bridge("br0")
    assert getattr(br, "forward_bpdu", False) is False
    for text, want in [("on", True), ("off", False), ("true", True), ("false", False),
                       ("on", True)]:
        server("set-br", "br0", f"forward-bpdu={text}")
        assert br.forward_bpdu is want
        stored = ConfigDB(daemon.switch.db.path).load()["bridges"]["br0"]["config"]
        assert stored["forward-bpdu"] is want
    assert "    forward-bpdu: on" in server("show").stdout
    shown = json.loads(server("--format", "json", "show").stdout)
    assert shown["bridges"][0]["settings"] == {"forward-bpdu": "on"}
    server("set-br", "br0", "forward-bpdu=")
    assert br.forward_bpdu is False
    assert "forward-bpdu" not in ConfigDB(daemon.switch.db.path).load()["bridges"]["br0"]["config"]
    assert "forward-bpdu" not in server("show").stdout


# -- random configuration requests over the socket: never EIO -----------------------------

TEXTS = [None, "", "x", "p1", "br0", "tap%d", "x" * 16, "10", "0", "-1", "4095", "1e400", "nan",
         "on", "maybe", "10,20", "native-untagged", "access", "a b", "peer", "color", "tag",
         "mtu", "netns_pid", "mac-aging-time", "mac-table-size", "forward-bpdu", "é" * 8]


def raw_request(cmd: Cmd, attrs: list, seq: int) -> bytes:
    msg = m.ovslitemsg()
    msg["cmd"] = int(cmd)
    msg["version"] = m.OVSLITE_PROTOCOL_VERSION
    msg["attrs"] = attrs
    msg["header"]["type"] = m.OVSLITE_FAMILY
    msg["header"]["flags"] = m.NLM_F_REQUEST | m.NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def random_items(rng) -> dict:
    items = []
    for _ in range(rng.randint(0, 3)):
        key, value = rng.choice(TEXTS), rng.choice(TEXTS)
        item = ([(KEY, key)] if key is not None else []) + \
               ([(VALUE, value)] if value is not None else [])
        items.append((ITEM, {"attrs": item}))
    return {"attrs": items}


def random_config_request(rng, seq: int) -> bytes:
    def name():
        return rng.choice(["br0", "br1", "p1", "p2", "tap%d", "x" * 16, "", "a b", "p\n1"])

    cmd = rng.choice([Cmd.ADD_BR, Cmd.DEL_BR, Cmd.ADD_PORT, Cmd.DEL_PORT, Cmd.SET_PORT,
                      Cmd.SET_BR, Cmd.FDB_ADD, Cmd.FDB_DEL])
    attrs = [("OVSLITE_ATTR_BRIDGE", name())]
    if cmd in (Cmd.ADD_PORT, Cmd.DEL_PORT, Cmd.SET_PORT, Cmd.FDB_ADD):
        attrs.append(("OVSLITE_ATTR_PORT", name()))
    if cmd == Cmd.ADD_PORT:
        attrs += [("OVSLITE_ATTR_TYPE", rng.choice([TYPE, "patch", "internal", "nosuch"])),
                  ("OVSLITE_ATTR_OPTIONS", random_items(rng))]
    if cmd in (Cmd.ADD_PORT, Cmd.SET_PORT, Cmd.SET_BR):
        attrs.append(("OVSLITE_ATTR_SETTINGS", random_items(rng)))
    if cmd in (Cmd.FDB_ADD, Cmd.FDB_DEL):
        attrs.append(("OVSLITE_ATTR_MAC", rng.choice(
            ["02:00:00:00:00:01", "01:00:5e:00:00:01", "00:00:00:00:00:00"])))
        if rng.random() < 0.5:
            attrs.append(("OVSLITE_ATTR_VLAN", rng.choice([0, 10, 4094, 4095, 65535])))
    return raw_request(cmd, attrs, seq)


def test_random_configuration_requests_never_get_eio(daemon):
    import random

    rng = random.Random(12)
    s = raw_conn(daemon.path)
    answers = {}
    try:
        for seq in range(1, 1501):
            s.send(random_config_request(rng, seq))
            reply = m.decode_reply(s.recv(m.MAX_MSG_SIZE))
            assert reply.errno != errno.EIO, reply.message
            assert "\n" not in reply.message
            answers[reply.errno] = answers.get(reply.errno, 0) + 1
    finally:
        s.close()
    assert answers.get(0, 0) > 50 and answers.get(errno.EINVAL, 0) > 300, answers
    # what was acknowledged is what is stored, and it loads
    assert ConfigDB(daemon.switch.db.path).load() == daemon.lt.call(lambda: daemon.switch.desired)

"""Port mirrors (ovslite.mirror): selection and copies in the core, the datapath's sending,
the flow cache, configuration checks through the Switch, and the CLI against a daemon."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import BCAST, TYPE, A, B, C, CtlRunner, Sink, make_bridge, one_line_error
from test_switch import refused, reload, stored, unchanged, with_ports
from test_switch import sw as sw  # noqa: F401  (the fixture)

from ovslite import mirror, vnet
from ovslite.bridge import Bridge, Port
from ovslite.datapath import Datapath
from ovslite.trace import trace_packet
from ovslite.vnet import ethernet

STP = bytes.fromhex("0180c2000000")


def pkt(dst: bytes, src: bytes, payload: bytes = b"x" * 46) -> bytes:
    return ethernet(dst + src + b"\x08\x00" + payload)


def tagged(dst: bytes, src: bytes, vid: int) -> bytes:
    return vnet.push_tag(pkt(dst, src), vid)


def mirrored_bridge(mirrors: dict, n: int = 4, settings: dict | None = None):
    """br0 with p1..pN up (settings per port name) and `mirrors` (stored form)."""
    br, ports = make_bridge(n)
    for p in ports:
        if settings and p.name in settings:
            br.configure_port(p, settings[p.name])
    mirror.configure(br, mirrors)
    return br, ports


def run(br: Bridge, port: Port, packets: list, now: float = 0.0):
    """mirror.forward with outputs and copies keyed by names."""
    outputs, copies = mirror.forward(br, port, packets, now)
    return ({p.name: b for p, b in outputs.items()},
            {(m.name, p.name): b for (m, p), b in copies.items()})


def learn(br: Bridge, port: Port, src: bytes) -> None:
    br.forward(port, [pkt(BCAST, src)], 0.0)


# -- selection ----------------------------------------------------------------------------


def test_source_port_selects_what_it_receives_only():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p4"}})
    learn(br, p2, B)
    f = pkt(B, A)
    outputs, copies = run(br, p1, [f])
    assert outputs == {"p2": [f]}
    assert copies == {("m", "p4"): [f]}
    learn(br, p1, A)
    assert run(br, p2, [pkt(A, B)])[1] == {}  # received on p2, sent on p1: not selected


def test_destination_port_selects_what_is_sent_there_only():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-dst-port": ["p2"], "output-port": "p4"}})
    learn(br, p2, B)
    learn(br, p3, C)
    to_b, to_c = pkt(B, A), pkt(C, A)
    outputs, copies = run(br, p1, [to_b, to_c])
    assert outputs == {"p2": [to_b], "p3": [to_c]}
    assert copies == {("m", "p4"): [to_b]}


def test_flooded_frame_is_copied_once_however_many_selections_match():
    # received on a selected port and flooded to two selected ports: one copy
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-src-port": ["p1"],
                                                  "select-dst-port": ["p2", "p3"],
                                                  "output-port": "p4"}})
    f = pkt(BCAST, A)
    outputs, copies = run(br, p1, [f])
    assert outputs == {"p2": [f], "p3": [f]}  # never flooded to the output port
    assert copies == {("m", "p4"): [f]}


def test_mirrors_sharing_an_output_send_one_copy_others_their_own():
    br, (p1, p2, p3, p4, p5) = mirrored_bridge({
        "a": {"select-all": True, "output-port": "p4"},
        "b": {"select-src-port": ["p1"], "output-port": "p4"},
        "c": {"select-src-port": ["p1"], "output-port": "p5"},
    }, n=5)
    f = pkt(BCAST, A)
    outputs, copies = run(br, p1, [f])
    assert outputs == {"p2": [f], "p3": [f]}
    assert copies == {("a", "p4"): [f], ("c", "p5"): [f]}


def test_select_all_with_vlans_selects_only_those_vlans():
    trunk = {"vlan-mode": "trunk"}
    br, (p1, p2, p3, p4) = mirrored_bridge(
        {"m": {"select-all": True, "select-vlan": [10], "output-port": "p4"}},
        settings={"p1": trunk, "p2": trunk, "p3": trunk, "p4": trunk})
    in10, in20 = tagged(BCAST, A, 10), tagged(BCAST, A, 20)
    _, copies = run(br, p1, [in10, in20])
    assert copies == {("m", "p4"): [in10]}


def test_output_port_drops_what_it_receives_and_learns_nothing():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-all": True, "output-port": "p4"}})
    outputs, copies = run(br, p4, [pkt(BCAST, C), pkt(A, C)])
    assert (outputs, copies) == ({}, {})
    assert p4.stats.drops == {"mirror-output": 2}
    assert br.macs.get(0, C) is None
    assert p4 not in br.reach(p1, 0).unicast


def test_output_port_form_follows_its_vlan_mode():
    br, (p1, p2, p3, p4) = mirrored_bridge(
        {"m": {"select-src-port": ["p1"], "output-port": "p4"}},
        settings={"p1": {"vlan-mode": "trunk"}, "p4": {"tag": 30}})  # access port, VLAN 30
    f = tagged(BCAST, A, 10)
    _, copies = run(br, p1, [f])
    assert copies == {("m", "p4"): [vnet.strip_tag(f)]}  # access: untagged, whatever the VLAN
    br.configure_port(p4, {"vlan-mode": "trunk", "trunks": [20]})  # a trunk not carrying 10
    mirror.configure(br, {"m": {"select-src-port": ["p1"], "output-port": "p4"}})
    assert run(br, p1, [f])[1] == {("m", "p4"): [f]}  # trunk: tagged as in the bridge


def test_output_vlan_floods_the_copy_retagged_to_ports_carrying_it():
    trunk = {"vlan-mode": "trunk"}
    br, (p1, p2, p3, p4, p5) = mirrored_bridge(
        {"rspan": {"select-src-port": ["p1"], "output-vlan": 99},
         "span": {"select-src-port": ["p2"], "output-port": "p5"}},
        n=5, settings={"p1": {"tag": 10}, "p2": {"tag": 10}, "p3": trunk,
                       "p4": {"tag": 99}, "p5": trunk})
    f = pkt(BCAST, A)
    outputs, copies = run(br, p1, [f])
    assert outputs == {"p2": [f], "p3": [vnet.push_tag(f, 10)]}
    # trunk p3 gets it tagged 99, access p4 (VLAN 99) untagged; p5 is a mirror output
    assert copies == {("rspan", "p3"): [vnet.push_tag(f, 99)], ("rspan", "p4"): [f]}


def test_output_vlan_skips_frames_already_in_it_and_reserved_groups():
    br, (p1, p2, p3) = mirrored_bridge(
        {"m": {"select-src-port": ["p1"], "output-vlan": 10}}, n=3,
        settings={"p1": {"tag": 10}, "p2": {"tag": 10}, "p3": {"tag": 10}})
    assert run(br, p1, [pkt(BCAST, A)])[1] == {}
    br.configure_port(p1, {"tag": 20})
    br.configure_port(p2, {"vlan-mode": "trunk"})
    br.forward_bpdu = True
    f = pkt(BCAST, A)
    assert run(br, p1, [f, pkt(STP, A)])[1] == {("m", "p2"): [vnet.set_vid(vnet.push_tag(f, 20), 10)],
                                                ("m", "p3"): [f]}


def test_dropped_frame_is_still_mirrored_from_its_source_port():
    # as OVS: ingress mirroring happens before the bridge decides (here: reserved group)
    br, (p1, p2, p3) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p3"}}, n=3)
    bpdu = pkt(STP, A)
    outputs, copies = run(br, p1, [bpdu])
    assert outputs == {} and copies == {("m", "p3"): [bpdu]}


def test_frame_not_accepted_on_its_vlan_is_not_mirrored():
    br, (p1, p2, p3) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p3"}},
                                       n=3, settings={"p1": {"tag": 10}})
    assert run(br, p1, [tagged(BCAST, A, 20)]) == ({}, {})


def test_gso_frame_copy_keeps_its_vnet_header():
    hdr = vnet.VNET_HDR.pack(vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM, 1, 54, 1448, 34, 16)
    big = hdr + BCAST + A + b"\x08\x00" + bytes(60000)
    br, (p1, p2, p3) = mirrored_bridge(
        {"m": {"select-src-port": ["p1"], "output-port": "p3"}}, n=3,
        settings={"p3": {"vlan-mode": "trunk"}, "p1": {"tag": 10}})
    _, copies = run(br, p1, [big])
    (copy,) = copies[("m", "p3")]
    assert len(copy) == len(big) + 4
    flags, gso_type, hdr_len, gso_size, csum_start, _ = vnet.VNET_HDR.unpack_from(copy)
    assert (gso_type, gso_size, hdr_len, csum_start) == (1, 1448, 58, 38)  # shifted by the tag
    assert copy[vnet.VNET_HDR_LEN + 16:] == vnet.push_tag(big, 10)[vnet.VNET_HDR_LEN + 16:]


def test_unselectable_batches_are_forwarded_whole():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p4"}})
    assert not br.mirrors.may_select(p2)
    assert br.mirrors.may_select(p1)


# -- the flow cache ----------------------------------------------------------------------


def test_flow_cache_never_caches_a_mirrored_path():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-dst-port": ["p2"], "output-port": "p4"}})
    learn(br, p2, B)
    learn(br, p3, C)
    learn(br, p1, A)
    assert br.unicast_path(p1, pkt(B, A), 0.0) is None  # to a selected port: never cached
    assert br.unicast_path(p1, pkt(C, A), 0.0)[0] is p3  # not selected: cached
    version = br.version
    mirror.configure(br, {})
    assert br.version != version  # flows set up before are stale now
    assert br.unicast_path(p1, pkt(B, A), 0.0)[0] is p2
    assert not p4.mirror_out


# -- the datapath ---------------------------------------------------------------------------


class Full(Sink):
    """A netdev whose queue is full: takes nothing."""

    def send_batch(self, packets):
        return 0


def datapath_bridge(output_netdev):
    br = Bridge("br0")
    ports = [br.add_port(Port(n, netdev=Sink())) for n in ("p1", "p2")]
    out = br.add_port(Port("span", netdev=output_netdev))
    for p in (*ports, out):
        br.set_port_state(p, True)
    mirror.configure(br, {"m": {"select-src-port": ["p1"], "output-port": "span"}})
    return br, ports, out


def test_datapath_sends_copies_after_frames_and_counts_them():
    br, (p1, p2), span = datapath_bridge(Sink())
    dp = Datapath(None, clock=lambda: 0.0)
    frames = [pkt(BCAST, A), pkt(BCAST, A, b"y" * 100)]
    dp.receive(p1, frames)
    assert p2.netdev.sent == frames
    assert span.netdev.sent == frames
    m = br.mirrors.by_name["m"]
    assert (m.packets, m.bytes, m.dropped) == (2, 60 + 114, 0)


def test_output_that_cannot_keep_up_drops_copies_not_frames():
    br, (p1, p2), span = datapath_bridge(Full())
    dp = Datapath(None, clock=lambda: 0.0)
    frames = [pkt(BCAST, A)] * 3
    dp.receive(p1, frames)
    assert p2.netdev.sent == frames  # forwarding untouched
    m = br.mirrors.by_name["m"]
    assert (m.packets, m.dropped) == (0, 3)
    assert span.stats.drops == {"tx-failed": 3}


# -- trace -------------------------------------------------------------------------------------


def test_trace_shows_mirror_copies_and_output_port_drops():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p4"}})
    t = trace_packet(p1, pkt(BCAST, A), 0.0)
    steps = [s for s in t.steps if s.kind == "mirror"]
    assert [(s.port, s.detail) for s in steps] == [("p4", "mirror m: copy to p4")]
    assert [o.port for o in t.outputs] == ["p2", "p3", "p4"]  # the copy last, as sent
    t = trace_packet(p4, pkt(BCAST, A), 0.0)
    assert t.drops and "mirror's output port" in t.drops[0].detail


# -- configuration (Switch: checked whole, kept in the database) -----------------------------


def mirror_switch(sw):
    return with_ports(sw, "p1", "p2", "p3", "p4")


@pytest.mark.parametrize("conf,text", [
    ({"select-src-port": ["nope"], "output-port": "p4"}, "select-src-port: no port named 'nope'"),
    ({"select-src-port": ["p1"], "output-port": "nope"}, "output port: no port named 'nope'"),
    ({"select-dst-port": ["p4"], "output-port": "p4"}, "output port p4 is also selected"),
    ({"select-src-port": ["p1"], "output-port": "p4", "output-vlan": 5}, "not both"),
    ({"select-src-port": ["p1"]}, "give an output port or an output VLAN"),
    ({"output-port": "p4"}, "selects nothing"),
    ({"select-all": True, "select-vlan": [4095], "output-port": "p4"}, "is not a VLAN (0-4094)"),
    ({"select-all": True, "output-vlan": 0}, "output VLAN 0 is not a VLAN (1-4094)"),
    ({"select-all": True, "select-src-port": ["p1"], "output-port": "p4"}, "select-all selects"),
])
def test_add_mirror_refusals_change_nothing(sw, conf, text):
    mirror_switch(sw)
    msg = unchanged(sw, refused, errno.EINVAL, sw.add_mirror, "br0", "m", conf)
    assert msg.startswith("mirror m: ") and text in msg, msg
    assert sw.bridges["br0"].mirrors is None


def test_duplicate_mirror_name_is_refused(sw):
    mirror_switch(sw)
    sw.add_mirror("br0", "m", {"select-all": True, "output-port": "p4"})
    msg = unchanged(sw, refused, errno.EEXIST, sw.add_mirror, "br0", "m",
                    {"select-all": True, "output-port": "p3"})
    assert msg == "mirror m already exists on bridge br0"
    unchanged(sw, refused, errno.ENOENT, sw.del_mirror, "br0", "other")


def test_mirrors_survive_a_restart(sw):
    mirror_switch(sw)
    sw.add_mirror("br0", "m", {"select-src-port": ["p1"], "select-vlan": [0], "output-port": "p4"})
    again = reload(sw)
    m = again.bridges["br0"].mirrors.by_name["m"]
    assert m.src == {again.ports["p1"]} and m.out is again.ports["p4"]
    assert again.ports["p4"].mirror_out
    again.del_mirror("br0", "m")
    assert not again.ports["p4"].mirror_out
    assert "mirrors" not in json.loads(stored(again))["bridges"]["br0"]


def test_del_port_leaves_selections_and_disables_a_mirror_losing_its_output(sw):
    mirror_switch(sw)
    sw.add_mirror("br0", "m", {"select-src-port": ["p1", "p2"], "output-port": "p4"})
    sw.del_port("p1")
    assert sw.desired["bridges"]["br0"]["mirrors"]["m"] == {"select-src-port": ["p2"],
                                                            "output-port": "p4"}
    sw.del_port("p4")
    m = reload(sw).bridges["br0"].mirrors.by_name["m"]  # kept, and valid at load
    assert not m.active and m.reason == "its output port was deleted"


@pytest.mark.parametrize("mirrors,text", [
    ({"m": {"select-all": True, "output-port": "gone"}}, "no port named 'gone'"),
    ({"m": {"select-all": 1, "output-port": "p1"}}, "select-all is stored only as true"),
    ({"m": {"select-all": True, "output-vlan": "10"}}, "is not a VLAN"),
    ({"m": {"select-all": True, "colour": "red"}}, "unknown key 'colour'"),
    ({"bad name": {"select-all": True}}, "invalid mirror name"),
    ([], "'mirrors' must be an object"),
])
def test_database_mirrors_are_checked_at_load(tmp_path, mirrors, text):
    from ovslite.db import ConfigDB, DatabaseError

    path = tmp_path / "conf.db"
    path.write_text(json.dumps({"format": 1, "bridges": {"br0": {
        "config": {}, "mirrors": mirrors,
        "ports": {"br0": {"type": "internal", "options": {}}, "p1": {"type": TYPE, "options": {}}}}}}))
    with pytest.raises(DatabaseError, match=text):
        ConfigDB(str(path)).load()


# -- the CLI against a daemon -----------------------------------------------------------------


def test_cli_add_list_show_del(daemon):
    ctl = CtlRunner(daemon)
    ctl("add-br", "br0")
    for p in ("p1", "p2", "span"):
        ctl("add-port", "br0", p, "--type", TYPE)
    ctl("add-mirror", "br0", "m0", "--select-src-port", "p1,p2", "--select-vlan", "0",
        "--output-port", "span")
    (m,) = json.loads(ctl("list-mirrors", "br0", "--json").output)
    assert m == {"bridge": "br0", "name": "m0", "select_all": False,
                 "select_src_port": ["p1", "p2"], "select_dst_port": [], "select_vlan": "0",
                 "output_port": "span", "output_vlan": None, "packets": 0, "bytes": 0,
                 "dropped": 0, "disabled": ""}
    text = ctl("list-mirrors", "br0").output
    assert "select: received on p1, p2; in VLAN 0" in text and "output: port span" in text
    assert "Mirror m0" in ctl("show").output
    traced = ctl("trace", "br0", "in_port=p1", "dl_src=02:00:00:00:00:01",
                 "dl_dst=ff:ff:ff:ff:ff:ff", "--generate").output
    assert "mirror m0: copy to span" in traced and "(as traced)" in traced, traced
    assert json.loads(ctl("list-mirrors", "br0", "--json").output)[0]["packets"] == 1
    one_line_error(ctl("add-mirror", "br0", "m1", "--select-dst-port", "span",
                       "--output-port", "span", code=1), 1, "output port span is also selected")
    one_line_error(ctl("add-mirror", "br0", "m1", "--select-all", code=2), 2,
                   "give exactly one of --output-port and --output-vlan")
    one_line_error(ctl("add-mirror", "br0", "m1", "--select-all", "--select-vlan", "5000",
                       "--output-vlan", "9", code=2), 2, "VLAN 5000 is out of range")
    ctl("del-mirror", "br0", "m0")
    assert json.loads(ctl("list-mirrors", "br0", "--json").output) == []
    one_line_error(ctl("del-mirror", "br0", "m0", code=1), 1, "no mirror named m0")


def test_commits_that_change_no_mirror_leave_the_bridge_version_alone(sw):
    # the version ends the bridge's cached flows: only a real change may move it
    mirror_switch(sw)
    br = sw.bridges["br0"]
    version = br.version
    sw.set_bridge("br0", {"mac-aging-time": "100"})
    assert br.version == version
    sw.add_mirror("br0", "m", {"select-all": True, "output-port": "p4"})
    version = br.version
    sw.set_bridge("br0", {"mac-aging-time": "200"})
    assert br.version == version


def test_a_down_output_port_gets_no_copies():
    br, (p1, p2, p3, p4) = mirrored_bridge({"m": {"select-src-port": ["p1"], "output-port": "p4"}})
    br.set_port_state(p4, False, "carrier lost")
    assert run(br, p1, [pkt(BCAST, A)])[1] == {}
    br.set_port_state(p4, True)
    assert run(br, p1, [pkt(BCAST, A)])[1] != {}


def test_show_works_with_a_daemon_older_than_mirrors(daemon, monkeypatch):
    from ovslite.control import messages as m

    monkeypatch.delitem(m.COMMANDS, m.Cmd.GET_MIRROR)  # the daemon refuses it: EOPNOTSUPP
    ctl = CtlRunner(daemon)
    ctl("add-br", "br0")
    assert "Bridge br0" in ctl("show").output
    # list-mirrors says so (the in-process daemon logs to this stdout: stderr only here)
    assert ctl("list-mirrors", "br0", code=1).stderr == "ovslite-ctl: unknown command 62\n"


def test_monitor_reports_mirrors_added_and_removed(daemon):
    from test_monitor import Watcher, brief

    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
        w = Watcher(daemon, groups=1)  # config events only
        c.add_mirror("br0", "m", select_all=True, output="p1")
        c.del_port("p1")  # the mirror stays, disabled: no event for it
        c.del_mirror("br0", "m")
    assert brief(w.take(3)) == [("mirror-added", "br0", {"mirror": "m"}),
                                ("port-removed", "br0", {"port": "p1"}),
                                ("mirror-removed", "br0", {"mirror": "m"})]
    assert w.quiet()
    w.close()

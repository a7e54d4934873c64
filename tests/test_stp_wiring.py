"""Spanning tree outside the protocol core: settings, port states enforced by the
bridge and the flow cache, BPDUs taken before anything else, the timer on the
event loop (a fake one here, with a fake clock), MAC table events, stp-show."""

from __future__ import annotations

import errno
import json
import re

import pytest
from helpers import BCAST, A, B, CtlRunner, Sink, make_bridge, one_line_error

from ovslite import flows
from ovslite.control.handlers import stp_values
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB
from ovslite.stpport import STP_MAC
from ovslite.switch import Switch, SwitchError
from ovslite.trace.walk import trace_packet
from ovslite.vnet import VNET_HDR_LEN

HDR = bytes(VNET_HDR_LEN)
LLDP = bytes.fromhex("0180c200000e")


def frame(dst: bytes, src: bytes, payload: bytes = b"\x08\x00" + bytes(46)) -> bytes:
    return HDR + dst + src + payload


def bpdu_frame(src: bytes) -> bytes:
    # a configuration BPDU's header is enough to be taken; the core judges the rest
    return HDR + STP_MAC + src + b"\x00\x26\x42\x42\x03" + bytes(35) + bytes(7)


class Handle:
    def __init__(self, when, fn, args):
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self):
        self.cancelled = True


class FakeLoop:
    """call_soon / call_later against a clock the test moves."""

    def __init__(self):
        self.now = 1000.0
        self.handles: list[Handle] = []

    def clock(self):
        return self.now

    def call_soon(self, fn, *args):
        h = Handle(self.now, fn, args)
        self.handles.append(h)
        return h

    def call_later(self, delay, fn, *args):
        h = Handle(self.now + delay, fn, args)
        self.handles.append(h)
        return h

    def add_reader(self, *a):
        pass

    def remove_reader(self, *a):
        pass

    def pending(self) -> list[Handle]:
        self.handles = [h for h in self.handles if not h.cancelled]
        return self.handles

    def run_until(self, t: float) -> None:
        while True:
            due = [h for h in self.pending() if h.when <= t]
            if not due:
                break
            h = min(due, key=lambda h: h.when)
            self.handles.remove(h)
            self.now = max(self.now, h.when)
            h.fn(*h.args)
        self.now = t


@pytest.fixture
def sw(tmp_path, fake_internal):
    loop = FakeLoop()
    s = Switch(ConfigDB(str(tmp_path / "conf.db")), Datapath(loop, clock=loop.clock))
    s.load()
    s.loop = loop
    yield s
    s.shutdown()


def db_text(sw) -> str:
    with open(sw.db.path) as f:
        return f.read()


# -- settings --------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"stp": "on", "rstp": "on"}, "stp and rstp cannot both be on"),
    ({"stp-priority": "65536"}, "stp-priority: 65536 is out of range (0-65535)"),
    ({"rstp-priority": "4097"}, "rstp-priority: 4097 is not a multiple of 4096"),
    ({"stp-hello-time": "0"}, "stp-hello-time: 0 is out of range (1-10)"),
    ({"stp-max-age": "40"}, "stp-max-age 40 is more than 2 x (stp-forward-delay 15 - 1)"),
    ({"rstp-transmit-hold-count": "x"}, "rstp-transmit-hold-count: 'x' is not a number"),
    ({"stp": "maybe"}, "stp: expected on or off"),
])
def test_bad_bridge_setting_changes_nothing(sw, changes, message):
    sw.add_bridge("br0")
    sw.set_bridge("br0", {"stp-priority": "4096"})
    before_db, before = db_text(sw), json.dumps(sw.desired, sort_keys=True)
    with pytest.raises(SwitchError) as exc:
        sw.set_bridge("br0", changes)
    assert exc.value.errno == errno.EINVAL
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert db_text(sw) == before_db
    assert json.dumps(sw.desired, sort_keys=True) == before
    assert "br0" not in sw.stp.trees  # nothing started by the refused change


@pytest.mark.parametrize("changes, message", [
    ({"stp-path-cost": "0"}, "stp-path-cost: 0 is out of range (1-65535)"),
    ({"rstp-port-priority": "17"}, "rstp-port-priority: 17 is not a multiple of 16"),
    ({"stp-port-priority": "256"}, "stp-port-priority: 256 is out of range (0-255)"),
    ({"rstp-admin-edge": "2"}, "rstp-admin-edge: expected on or off"),
])
def test_bad_port_setting_changes_nothing(sw, changes, message):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake")
    before = db_text(sw)
    with pytest.raises(SwitchError, match=re.escape(message)):
        sw.set_port("p1", changes)
    assert db_text(sw) == before


def test_settings_are_kept_typed_and_reload(sw, tmp_path):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake", settings={"stp-path-cost": "7", "stp-enable": "off"})
    sw.set_bridge("br0", {"rstp": "on", "rstp-priority": "8192", "rstp-hello-time": "1"})
    doc = json.loads(db_text(sw))["bridges"]["br0"]
    assert doc["config"] == {"rstp": True, "rstp-priority": 8192, "rstp-hello-time": 1}
    assert doc["ports"]["p1"]["settings"] == {"stp-path-cost": 7, "stp-enable": False}
    assert ConfigDB(sw.db.path).load() == sw.desired


# -- the timer ---------------------------------------------------------------------------

def test_no_timer_unless_stp_is_on(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake")
    sw.loop.run_until(1010)
    assert sw.loop.pending() == []
    sw.set_bridge("br0", {"stp": "on"})
    sw.loop.run_until(1013)  # past the first hello time
    assert len(sw.loop.pending()) == 1  # one call_later at the core's next deadline
    sent = sw.ports["p1"].netdev.sent
    assert sent and all(p[VNET_HDR_LEN:VNET_HDR_LEN + 6] == STP_MAC for p in sent)
    assert sw.bridges["br0"].ports["br0"].netdev.sent == []  # the internal port takes no part
    sw.set_bridge("br0", {"stp": "off"})
    assert sw.loop.pending() == []
    assert sw.ports["p1"].stp_forwarding


# -- the loop, end to end (patch pairs, fake clock) -----------------------------------

def patch_loop(sw, mode: str) -> None:
    """br0 and br1 joined by two patch pairs: a loop."""
    for br in ("br0", "br1"):
        sw.add_bridge(br)
    sw.add_port("br0", "a1", "patch", {"peer": "b1"})
    sw.add_port("br1", "b1", "patch", {"peer": "a1"})
    sw.add_port("br0", "a2", "patch", {"peer": "b2"})
    sw.add_port("br1", "b2", "patch", {"peer": "a2"})
    sw.add_port("br0", "h0", "test-fake")
    sw.add_port("br1", "h1", "test-fake")
    sw.set_bridge("br0", {mode: "on", f"{mode}-priority": "4096"})
    sw.set_bridge("br1", {mode: "on"})


@pytest.mark.parametrize("mode", ["stp", "rstp"])
def test_patch_loop_blocks_one_port_and_a_broadcast_crosses_once(sw, mode):
    patch_loop(sw, mode)
    sw.loop.run_until(1000 + 35)  # 802.1D: 2 x forward delay (15 s)
    ports = sw.ports
    blocked = [n for n in ("a1", "a2", "b1", "b2") if not ports[n].stp_forwarding]
    assert blocked == ["b2"], {n: sw.stp.trees[ports[n].bridge.name].core.state(n)
                               for n in ("a1", "a2", "b1", "b2")}
    state = "blocking" if mode == "stp" else "discarding"
    assert ports["b2"].stp_block == f"{mode}: alternate, {state}"
    h1 = ports["h1"].netdev.sent
    h1.clear()
    sw.datapath.receive(ports["h0"], [frame(BCAST, A)])
    assert len(h1) == 1
    shown = stp_values(sw.stp.trees["br1"])
    by_port = {p["port"]: p["info"] for p in shown["ports"]}
    assert by_port["b2"]["role"] == "alternate" and by_port["b1"]["role"] == "root"
    assert shown["info"]["root_port"] == "b1"


def test_failover_when_the_root_port_goes_down(sw):
    patch_loop(sw, "rstp")
    sw.loop.run_until(1000 + 10)
    ports = sw.ports
    assert not ports["b2"].stp_forwarding
    sw.set_port("a1", {"admin": "down"})  # its peer b1 shows down too
    sw.loop.run_until(sw.loop.now + 1)
    assert ports["b2"].stp_forwarding
    h1 = ports["h1"].netdev.sent
    h1.clear()
    sw.datapath.receive(ports["h0"], [frame(BCAST, A)])
    assert len(h1) == 1


def test_events_reach_listeners(sw):
    seen = []
    sw.listeners.append(lambda event, **f: seen.append((event, f.get("port"), f.get("new"))))
    patch_loop(sw, "rstp")
    sw.loop.run_until(1000 + 10)
    assert ("stp-role", "b2", "alternate") in seen
    assert ("stp-state", "b1", "forwarding") in seen


# -- the bridge enforces what the tree decided ----------------------------------------

class TakesBpdus:
    """Stands in for stpport.BridgeStp: keeps the BPDUs, returns the rest."""

    def __init__(self):
        self.bpdus = []

    def take_bpdus(self, port, packets, now):
        rest = [p for p in packets if p[VNET_HDR_LEN:VNET_HDR_LEN + 6] != STP_MAC]
        self.bpdus += [p for p in packets if p not in rest]
        return rest


def test_blocked_port_neither_forwards_nor_learns():
    br, (p1, p2, p3) = make_bridge(3)
    br.stp = TakesBpdus()
    p1.stp_forwarding = p1.stp_learning = False
    br.changed()
    assert br.forward(p1, [frame(BCAST, A)], 1.0) == {}
    assert br.macs.get(0, A) is None
    assert p1.stats.drops == {"stp-blocked": 1}
    out = br.forward(p2, [frame(BCAST, B)], 1.0)
    assert set(out) == {p3}  # nothing to the blocked port


def test_learning_port_learns_but_does_not_forward():
    br, (p1, p2, p3) = make_bridge(3)
    br.stp = TakesBpdus()
    p1.stp_forwarding = False
    br.changed()
    assert br.forward(p1, [frame(BCAST, A)], 1.0) == {}
    assert br.macs.get(0, A).port is p1


@pytest.mark.parametrize("forward_bpdu", [False, True])
def test_bpdus_are_taken_whatever_forward_bpdu_says(forward_bpdu):
    br, (p1, p2, p3) = make_bridge(3)
    br.forward_bpdu = forward_bpdu
    br.stp = stp = TakesBpdus()
    p1.stp_forwarding = p1.stp_learning = False  # taken even on a blocked port
    br.changed()
    assert br.forward(p1, [bpdu_frame(A)], 1.0) == {}
    assert len(stp.bpdus) == 1
    out = br.forward(p2, [bpdu_frame(B), frame(LLDP, B)], 1.0)
    assert len(stp.bpdus) == 2
    # the other reserved group addresses keep their handling
    assert (set(out) == {p3}) if forward_bpdu else (out == {} and p2.stats.drops["reserved-group"] == 1)


def test_flow_through_a_port_that_stops_forwarding_is_not_used():
    br, (p1, p2, _) = make_bridge(3)
    for p in (p1, p2):
        p.netdev = Sink()
    br.forward(p2, [frame(BCAST, B)], 1.0)  # B learned on p2
    pkt = frame(B, A)
    br.forward(p1, [pkt], 1.0)
    flow = flows.set_up(p1, pkt, 1.0)
    assert flow is not None and flow.out is p2
    p2.stp_forwarding = False
    br.changed()  # what stpport does on a state change
    assert not flow.valid(1.0)
    assert flows.set_up(p1, pkt, 1.0) is None
    assert br.forward(p1, [pkt], 1.0) == {}


def test_blocked_ingress_gets_no_flow():
    br, (p1, p2, _) = make_bridge(3)
    br.forward(p2, [frame(BCAST, B)], 1.0)
    p1.stp_forwarding = False
    br.changed()
    assert br.unicast_path(p1, frame(B, A), 1.0) is None


def test_topology_change_ages_fast_then_normally(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake")
    sw.set_bridge("br0", {"stp": "on", "mac-aging-time": "100"})
    br, tree = sw.bridges["br0"], sw.stp.trees["br0"]
    tree._apply_event({"event": "fast-aging", "seconds": 15})
    assert br.macs.aging == 15
    sw.set_bridge("br0", {"mac-aging-time": "200"})  # a reconcile meanwhile keeps it fast
    assert br.macs.aging == 15
    tree._apply_event({"event": "normal-aging"})
    assert br.macs.aging == 200
    port = sw.ports["p1"]
    br.macs.learn(0, A, port, sw.loop.now)
    tree._apply_event({"event": "flush", "ports": ["p1"]})
    assert br.macs.get(0, A) is None


# -- ovslite-ctl ------------------------------------------------------------------------

def test_ctl_set_br_refusal_is_one_line(daemon):
    ctl = CtlRunner(daemon)
    ctl("add-br", "br0")
    one_line_error(ctl("set-br", "br0", "stp=on", "rstp=on", code=1), 1,
                   "stp and rstp cannot both be on")
    one_line_error(ctl("set-br", "br0", "stp-priority=70000", code=2), 2, "out of range")
    one_line_error(ctl("stp-show", "br0", code=1), 1, "has neither stp nor rstp on")


def test_ctl_stp_show_like_ovs_appctl(daemon):
    ctl = CtlRunner(daemon)
    ctl("add-br", "br0")
    ctl("add-port", "br0", "p1", "--type", "test-fake", "stp-path-cost=7")
    ctl("set-br", "br0", "stp=on", "stp-priority=4096")
    text = ctl("stp-show").output
    assert "---- br0 ----" in text and "This bridge is the root" in text
    assert "stp-priority    4096" in text
    assert re.search(r"p1\s+designated\s+listening\s+7\s+128\.\d+", text), text
    doc = json.loads(ctl("--format", "json", "stp-show", "br0").output)
    assert doc[0]["ports"]["p1"]["cost"] == 7 and doc[0]["root"]["is_this_bridge"] is True
    assert "stp-priority: 4096" in ctl("show").output


def test_trace_says_what_the_tree_blocks(sw):
    patch_loop(sw, "rstp")
    sw.loop.run_until(1000 + 10)
    ports, now = sw.ports, sw.loop.now
    t = trace_packet(ports["b2"], frame(BCAST, B), now, ports)
    assert "blocked by spanning tree (rstp: alternate, discarding)" in t.drop_reason
    t = trace_packet(ports["h1"], frame(BCAST, B), now, ports)
    assert any("not to b2 (blocked by spanning tree" in s.detail for s in t.steps), t.steps
    t = trace_packet(ports["h1"], bpdu_frame(B), now, ports)
    assert "taken by the bridge's spanning tree (rstp)" in t.drop_reason


def test_monitor_reports_role_and_state_changes(sw):
    from ovslite.control import messages as m
    from ovslite.control.monitor import EVENT_GROUPS, STATE, MonitorHub
    from ovslite_ctl.monitor import normalize, render_event

    hub = MonitorHub(sw, sw.loop)
    for event, fields in (("stp-role", {"port": "b2", "old": "designated", "new": "alternate"}),
                          ("stp-state", {"port": "b2", "old": "learning", "new": "discarding"}),
                          ("topology-change", {"new": "3"})):
        assert EVENT_GROUPS[event] == STATE
        values = {"event": event, "time": 0, **hub._values(event, {"bridge": "br1", **fields})}
        reply = m.decode_reply(m.encode_reply(m.Cmd.MONITOR, values, 1, multi=True))
        line = render_event(normalize(reply.values))
        assert line.endswith(f"{event} bridge=br1" + "".join(
            f" {k}={fields[k]}" for k in ("port", "old", "new") if k in fields)), line


def test_bpdus_bypass_vlans_and_split_horizon(sw):
    """BPDUs leave untagged whatever the port's VLANs, on a tunnel-like port too, and
    are taken from a trunk that carries no untagged VLAN."""
    sw.add_bridge("br0")
    sw.add_port("br0", "acc", "test-fake", settings={"tag": "10"})
    sw.add_port("br0", "trk", "test-fake", settings={"trunks": "20"})
    sw.add_port("br0", "tun", "test-fake")
    sw.ports["tun"].split_horizon = True
    sw.set_bridge("br0", {"rstp": "on"})
    sw.loop.run_until(1003)
    for name in ("acc", "trk", "tun"):
        sent = sw.ports[name].netdev.sent
        assert sent and all(p[VNET_HDR_LEN:VNET_HDR_LEN + 6] == STP_MAC and
                            p[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14] != b"\x81\x00" for p in sent), name
    tree = sw.stp.trees["br0"]
    peer = sw.ports["acc"].netdev.sent[0]
    sw.datapath.receive(sw.ports["trk"], [peer[:VNET_HDR_LEN + 6] + B + peer[VNET_HDR_LEN + 12:]])
    assert tree.show()["ports"]["trk"]["rx_bpdus"] == 1
    assert "vlan" not in sw.ports["trk"].stats.drops


class Spinning(BaseException):
    """Not an Exception: BridgeStp._run would log one and go on."""


def test_a_deadline_always_due_does_not_spin(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake")
    sw.set_bridge("br0", {"stp": "on"})
    tree = sw.stp.trees["br0"]
    tree.core.next_deadline = lambda: 0.0  # a core that would always be due
    runs = []

    def tick(now):
        runs.append(now)
        if len(runs) > 5000:
            raise Spinning("the timer spins")
        return []

    tree.core.tick = tick
    sw.loop.run_until(sw.loop.now + 1.0)
    assert len(runs) <= 1001  # at most one run a ms, however due it says it is


def test_a_mirror_output_takes_no_part(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "test-fake")
    sw.add_port("br0", "mon", "test-fake")
    sw.set_bridge("br0", {"rstp": "on"})
    assert "mon" in sw.stp.trees["br0"].members
    sw.add_mirror("br0", "m0", {"select-all": True, "output-port": "mon"})
    tree = sw.stp.trees["br0"]
    assert "mon" not in tree.members and "mon" not in tree.show()["ports"]
    sw.ports["mon"].netdev.sent.clear()
    sw.loop.run_until(sw.loop.now + 5)
    assert not any(p[VNET_HDR_LEN:VNET_HDR_LEN + 6] == STP_MAC for p in sw.ports["mon"].netdev.sent)

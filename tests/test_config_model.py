"""A refused change changes nothing: random configuration requests against a model.

Random sequences of valid and invalid requests (bad names, options, settings,
deletes of things others refer to, ports that fail to open, saves that fail)
go to a Switch with fake port types. A model of the acknowledged history is
updated only when a request succeeds. After every request the running
configuration (bridges, ports, settings, static MACs in the tables), the Switch's
desired configuration, the database file and the model agree; a refused request
left the file byte for byte as it was, raised SwitchError with one line, and a
request the model deems valid was accepted. Now and then the switch is restarted
from its file, which must load into the same configuration.

The model decides validity by structure (what exists, what refers to what) and
leaves the meaning of one setting to portconfig/confcheck, which have their own
tests.
"""

from __future__ import annotations

import errno
import json
import os
import random

import pytest
from helpers import TYPE, FakeInternal

from ovslite import confcheck, portconfig
from ovslite import netdev as netdevmod
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB
from ovslite.mactable import DEFAULT_AGING, DEFAULT_SIZE
from ovslite.names import check_ifname
from ovslite.switch import Switch, SwitchError
from ovslite.vnet import format_mac, parse_mac

BRIDGES = ["br0", "br1", "br2"]
PORTS = ["p1", "p2", "p3", "missing1"]  # FakeNetdev fails to open "missing*"
BAD_NAMES = ["tap%d", "a/b", "x" * 16, "a b", "", "eth0:1", "p\n1"]
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02"]
BAD_MACS = ["01:00:5e:00:00:01", "00:00:00:00:00:00"]
#: per type: (options it takes, options it refuses)
OPTIONS = {
    TYPE: ([{}, {"color": "red"}, {"peer": "p2"}],
           [{"nope": "1"}, {None: "x", "zzz": "1"}, {"color": None}, {"color": 5}]),
    "patch": ([{"peer": "p1"}, {"peer": "p2"}, {"peer": "p3"}],
              [{}, {"peer": "x" * 16}, {"peer": "tap%d"}, {"peer": 5}, {"peer": ""}]),
    "bogus": ([], [{}]),
}
#: (valid changes, changes refused whatever the port's settings)
PORT_SETTINGS = ([{}, {"tag": "10"}, {"tag": "20"}, {"trunks": "10,20"}, {"trunks": ""},
                  {"tag": ""}, {"vlan-mode": "native-untagged", "tag": "10"}, {"vlan-mode": ""},
                  {"mtu": "1400"}, {"vlan-mode": "access"}, {"learning": None}],
                 [{"tag": "5000"}, {"mtu": "1e400"}, {"nope": "1"}, {"tag": 10.0}])
BRIDGE_SETTINGS = ([{"mac-aging-time": "60"}, {"mac-table-size": "100"},
                    {"forward-bpdu": "on"}, {"forward-bpdu": ""}, {"mac-aging-time": ""}],
                   [{"mac-aging-time": "nan"}, {"mac-aging-time": "inf"},
                    {"mac-table-size": "0"}, {"forward-bpdu": "maybe"}, {"nope": "1"},
                    {"mac-table-size": True}])
VLANS = [None, None, 0, 10, 20, 30, 4094]


class Refused(Exception):
    """The model's verdict: this request must be refused."""


def good_name(name) -> bool:
    try:
        check_ifname(name)
        return True
    except ValueError:
        return False


def valid(check, *args) -> bool:
    try:
        check(*args)
        return True
    except ValueError:
        return False


class Model:
    """The acknowledged configuration: bridge -> {"ports": {name: [type, options,
    settings]}, "config": {setting: value}, "statics": {(vlan, mac): port}}."""

    def __init__(self):
        self.bridges: dict = {}

    def owner(self, port):
        return next((b for b, br in self.bridges.items() if port in br["ports"]), None)

    # Each method applies a request to a copy and returns it, or raises Refused.
    def add_br(self, name):
        if not good_name(name) or name in self.bridges or self.owner(name):
            raise Refused
        self.bridges[name] = {"ports": {name: ["internal", {}, {}]}, "config": {}, "statics": {}}

    def del_br(self, name):
        if name not in self.bridges:
            raise Refused
        del self.bridges[name]

    def add_port(self, br, name, type_, options, settings):
        if (not good_name(name) or br not in self.bridges or self.owner(name)
                or name in self.bridges or name.startswith("missing") and type_ == TYPE):
            raise Refused
        if type_ == "bogus" or not valid(confcheck.check_options, name, type_, options):
            raise Refused
        if not valid(lambda: portconfig.merge({}, portconfig.parse(settings))):
            raise Refused
        typed = portconfig.merge({}, portconfig.parse(settings))
        self.bridges[br]["ports"][name] = [type_, dict(options), typed]

    def del_port(self, name):
        br = self.owner(name)
        if br is None or br == name:
            raise Refused
        del self.bridges[br]["ports"][name]
        statics = self.bridges[br]["statics"]
        for key in [k for k, p in statics.items() if p == name]:
            del statics[key]

    def set_port(self, name, changes):
        br = self.owner(name)
        if br is None:
            raise Refused
        port = self.bridges[br]["ports"][name]
        if not valid(lambda: portconfig.merge(port[2], portconfig.parse(changes))):
            raise Refused
        new = portconfig.merge(port[2], portconfig.parse(changes))
        statics = self.bridges[br]["statics"]
        if any(p == name and not portconfig.carries(new, v) for (v, _), p in statics.items()):
            raise Refused
        port[2] = new

    def set_br(self, name, changes):
        if name not in self.bridges or not all(
                valid(confcheck.parse_bridge_setting, k, v) for k, v in changes.items()):
            raise Refused
        config = self.bridges[name]["config"]
        for key, text in changes.items():
            value = confcheck.parse_bridge_setting(key, text)
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value

    def fdb_add(self, br, mac, port, vlan):
        if br not in self.bridges or port not in self.bridges[br]["ports"] or mac in BAD_MACS:
            raise Refused
        settings = self.bridges[br]["ports"][port][2]
        if vlan is not None and not portconfig.carries(settings, vlan):
            raise Refused
        for v in [vlan] if vlan is not None else portconfig.static_vlans(settings):
            self.bridges[br]["statics"][(v, mac)] = port

    def fdb_del(self, br, mac, vlan):
        if br not in self.bridges:
            raise Refused
        statics = self.bridges[br]["statics"]
        doomed = [k for k in statics if k[1] == mac and vlan in (None, k[0])]
        if not doomed:
            raise Refused  # nothing is learned in this test: no traffic
        for key in doomed:
            del statics[key]

    def canon(self) -> dict:
        return {b: {"ports": {p: (t, o, s) for p, (t, o, s) in br["ports"].items()},
                    "config": dict(br["config"]),
                    "statics": dict(br["statics"])} for b, br in self.bridges.items()}


def canon_doc(doc: dict) -> dict:
    """A database document in the model's form."""
    out = {}
    for b, br in doc["bridges"].items():
        config = dict(br.get("config", {}))
        statics = {(e["vlan"], e["mac"]): e["port"] for e in config.pop("static-macs", [])}
        ports = {p: (c["type"], c.get("options", {}), c.get("settings", {}))
                 for p, c in br["ports"].items()}
        out[b] = {"ports": ports, "config": config, "statics": statics}
    return out


def canon_running(sw: Switch) -> dict:
    """The live bridges and ports in the model's form (the config from the tables)."""
    out = {}
    for b, br in sw.bridges.items():
        config = {}
        if br.macs.aging != DEFAULT_AGING:
            config["mac-aging-time"] = br.macs.aging
        if br.macs.max_entries != DEFAULT_SIZE:
            config["mac-table-size"] = br.macs.max_entries
        if getattr(br, "forward_bpdu", False):
            config["forward-bpdu"] = True
        statics = {(e.vlan, format_mac(e.mac)): e.port.name
                   for e in br.macs.entries.values() if e.static}
        ports = {p: (port.type, port.netdev.config, port.settings) for p, port in br.ports.items()}
        out[b] = {"ports": ports, "config": config, "statics": statics}
    assert set(sw.ports) == {p for br in out.values() for p in br["ports"]}
    return out


def comparable(model: dict) -> dict:
    """The model as the running switch shows it: default values are not visible there."""
    out = {}
    for b, br in model.items():
        config = {k: v for k, v in br["config"].items()
                  if not (k == "forward-bpdu" and v is False)}
        out[b] = {**br, "config": config}
    return out


def stored(path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


@pytest.fixture
def switch_factory(tmp_path, monkeypatch):
    monkeypatch.setitem(netdevmod._CLASSES, "internal", FakeInternal)
    path = str(tmp_path / "conf.db")

    def make() -> Switch:
        sw = Switch(ConfigDB(path), Datapath(None))
        sw.load()
        return sw

    return make


class SaveFails:
    """ConfigDB.save, made to fail (ENOSPC) when `armed`."""

    def __init__(self, monkeypatch):
        self.armed = False
        real = ConfigDB.save

        def save(db, doc, **kwargs):
            if self.armed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(db, doc, **kwargs)

        monkeypatch.setattr(ConfigDB, "save", save)


def request(rng: random.Random, model: Model):
    """One random request: (kind, arguments, unused)."""
    def any_name(pool):
        return rng.choice(BAD_NAMES) if rng.random() < 0.08 else rng.choice(pool)

    def pick(pools):
        good, bad = pools
        return rng.choice(bad) if not good or rng.random() < 0.12 else rng.choice(good)

    kind = rng.choice(["add_br", "add_br", "del_br", "add_port", "add_port", "add_port",
                       "del_port", "set_port", "set_port", "set_br", "fdb_add",
                       "fdb_add", "fdb_add", "fdb_del"])
    br = any_name(BRIDGES)
    port = any_name(PORTS + BRIDGES[:1])
    mac = rng.choice(BAD_MACS) if rng.random() < 0.08 else rng.choice(MACS)
    vlan = rng.choice(VLANS)
    if kind == "add_br":
        return kind, (br,), {}
    if kind == "del_br":
        return kind, (br,), {}
    if kind == "add_port":
        type_ = rng.choice([TYPE, TYPE, TYPE, "patch", "patch", "bogus"])
        options = pick(OPTIONS[type_])
        settings = pick(PORT_SETTINGS) if rng.random() < 0.5 else {}
        return kind, (br, port, type_, options, settings), {}
    if kind == "del_port":
        return kind, (port,), {}
    if kind == "set_port":
        return kind, (port, pick(PORT_SETTINGS)), {}
    if kind == "set_br":
        return kind, (br, pick(BRIDGE_SETTINGS)), {}
    if kind == "fdb_add":
        return kind, (br, mac, port, vlan), {}
    return kind, (br, mac, vlan), {}


def call(sw: Switch, kind: str, args: tuple):
    if kind == "add_br":
        return sw.add_bridge(*args)
    if kind == "del_br":
        return sw.del_bridge(*args)
    if kind == "add_port":
        br, port, type_, options, settings = args
        return sw.add_port(br, port, type_, options, settings=settings)
    if kind == "set_br":
        return sw.set_bridge(*args)
    if kind == "set_port":
        return sw.set_port(*args)
    if kind == "del_port":
        return sw.del_port(*args)
    if kind == "fdb_add":
        br, mac, port, vlan = args
        return sw.fdb_add(br, parse_mac(mac), port, vlan)
    br, mac, vlan = args
    return sw.fdb_del(br, parse_mac(mac), vlan)


@pytest.mark.parametrize("seed", range(12))
def test_running_database_and_history_agree_after_every_request(switch_factory, monkeypatch,
                                                                 seed):
    rng = random.Random(seed)
    saves = SaveFails(monkeypatch)
    sw = switch_factory()
    model = Model()
    accepted = refused = 0
    for step in range(250):
        kind, args, _ = request(rng, model)
        before = stored(sw.db.path)
        saves.armed = rng.random() < 0.08
        trial = Model()
        trial.bridges = _copy(model.bridges)
        try:
            getattr(trial, kind)(*args)
            expect_ok = not saves.armed
        except Refused:
            expect_ok = False
        where = f"seed {seed} step {step}: {kind}{args!r}"
        try:
            call(sw, kind, args)
            ok = True
        except SwitchError as exc:
            ok = False
            assert str(exc) and "\n" not in str(exc), where
            assert exc.errno != errno.EIO, f"{where}: EIO for bad input: {exc}"
        saves.armed = False
        assert ok == expect_ok, f"{where}: switch {'accepted' if ok else 'refused'} it"
        if ok:
            model = trial
            accepted += 1
        else:
            refused += 1
            assert stored(sw.db.path) == before, f"{where}: the database changed"
        want = model.canon()
        assert canon_doc(sw.desired) == want, where
        if stored(sw.db.path) is not None:
            assert canon_doc(json.loads(stored(sw.db.path))) == want, where
        else:
            assert want == {}, where
        assert canon_running(sw) == comparable(want), where
        if rng.random() < 0.03:  # a restart reads back what was acknowledged
            sw.shutdown()
            sw = switch_factory()
            assert canon_running(sw) == comparable(want), f"{where}: after a restart"
    sw.shutdown()
    assert accepted > 40 and refused > 40, (accepted, refused)


def _copy(bridges: dict) -> dict:
    return {b: {"ports": {p: [t, dict(o), dict(s)] for p, (t, o, s) in br["ports"].items()},
                "config": dict(br["config"]), "statics": dict(br["statics"])}
            for b, br in bridges.items()}

"""MacTable against a reference model: the straightforward design it replaced.

The table keeps its entries in per-VLAN dicts and its eviction queues as
deques with marks (for memory, see ovslite/mactable.py); the model is the
earlier one dict keyed by (vlan, mac) with one ordered dict of keys per port.
Random operations must leave both with the same entries, counters, events,
eviction order and next victim, and the deques must stay bounded.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from ovslite import mactable
from ovslite.mactable import COMPACT_SLACK, MacTable

PORTS = ("p1", "p2", "p3", "p4")


class Model:
    def __init__(self, aging: float, size: int):
        self.aging, self.size = aging, size
        self.entries: dict = {}  # (vlan, mac) -> [port, used, static, queued]
        self.by_port: dict = {}  # port -> {key: None}, oldest first
        self.events: list = []
        self.counts = {"learned": 0, "moved": 0, "aged": 0, "evicted": 0}

    def learn(self, vlan, mac, port, now):
        key = (vlan, mac)
        e = self.entries.get(key)
        if e is not None:
            if e[0] is port:
                e[1] = now
                return
            if e[2]:
                return
            old = e[0]
            del self.by_port[old][key]
            e[0], e[1], e[3] = port, now, now
            self.by_port.setdefault(port, {})[key] = None
            self.events.append(("moved", vlan, mac, port, old))
            return
        if self.learned() >= self.size and not self.evict():
            return
        self.entries[key] = [port, now, False, now]
        self.by_port.setdefault(port, {})[key] = None
        self.events.append(("learned", vlan, mac, port, None))

    def victim_port(self):
        victims = [(len(k), p) for p, k in self.by_port.items() if k]
        return max(victims, key=lambda v: v[0])[1] if victims else None

    def victim(self):
        port = self.victim_port()
        if port is None:
            return None
        keys = self.by_port[port]
        for key in keys:
            e = self.entries[key]
            if e[1] <= e[3]:
                return key
        return next(iter(keys))

    def evict(self) -> bool:
        port = self.victim_port()
        if port is None:
            return False
        keys = self.by_port[port]
        for _ in range(len(keys)):
            key = next(iter(keys))
            del keys[key]
            e = self.entries[key]
            if e[1] <= e[3]:
                break
            e[3] = e[1]
            keys[key] = None
        else:
            key = next(iter(keys))
            del keys[key]
        e = self.entries.pop(key)
        self.events.append(("evicted", *key, e[0], None))
        return True

    def remove(self, key):
        e = self.entries.pop(key, None)
        if e is not None and not e[2]:
            self.by_port[e[0]].pop(key, None)
        return e

    def add_static(self, vlan, mac, port, now):
        self.remove((vlan, mac))
        self.entries[(vlan, mac)] = [port, now, True, now]

    def expire(self, now):
        aged = sorted((k for k, e in self.entries.items() if not e[2] and e[1] < now - self.aging),
                      key=lambda k: (self.entries[k][1], *k))  # least recently used first
        for key in aged:
            e = self.remove(key)
            self.events.append(("aged", *key, e[0], None))
        return len(aged)

    def flush(self, port=None, include_static=False):
        doomed = [k for k, e in self.entries.items()
                  if (port is None or e[0] is port) and (include_static or not e[2])]
        for key in doomed:
            self.remove(key)
        return len(doomed)

    def drop_port(self, port):
        """A port leaving the bridge: its entries and its place in the port order go."""
        count = self.flush(port, include_static=True)
        self.by_port.pop(port, None)
        return count

    def resize(self, size):
        self.size = size
        while self.learned() > size and self.evict():
            pass

    def learned(self):
        """Static entries do not count toward the limit (as fdb_max_learned)."""
        return sum(1 for e in self.entries.values() if not e[2])


def check_same(t: MacTable, model: Model, events: list) -> None:
    assert {k: (e.port, e.used, e.static) for k, e in t.entries.items()} == \
        {k: (e[0], e[1], e[2]) for k, e in model.entries.items()}
    assert len(t) == len(model.entries)
    assert events == model.events
    for e in model.events:
        model.counts[e[0]] += 1
    events.clear()
    model.events.clear()
    order = {p: [(e.vlan, e.mac) for e in q] for p, q in t.eviction_order().items() if q}
    assert order == {p: list(k) for p, k in model.by_port.items() if k}
    v, key = t.victim(), model.victim()
    assert (None if v is None else (v.vlan, v.mac)) == key
    for q in t._queues.values():  # the marks stay bounded
        assert q.live == sum(e.queued is not None for e in q.items)
        assert len(q.items) <= 2 * q.live + mactable.COMPACT_SLACK + 1
    live = sum(q.live for q in t._queues.values())  # the aging wheel's references too
    assert t.wheel.refs - t.wheel.dead == live
    assert t.wheel.refs <= 2 * live + mactable.COMPACT_SLACK + 1


@pytest.mark.parametrize("slack", [0, COMPACT_SLACK])  # 0: compaction happens often
@pytest.mark.parametrize("seed", range(8))
def test_random_operations_match_the_model(seed, slack, monkeypatch):
    monkeypatch.setattr(mactable, "COMPACT_SLACK", slack)
    rng = random.Random(seed)
    size = rng.choice((3, 8, 40))
    t, model = MacTable(aging=30, max_entries=size), Model(30, size)
    events: list = []
    t.listener = lambda kind, e, old: events.append((kind, e.vlan, e.mac, e.port, old))
    macs = [bytes([2, 0, 0, 0, 0, n]) for n in range(rng.choice((6, 30, 120)))]
    now = 0.0
    for _ in range(3000):
        now += rng.choice((0, 0, 0.5, 1, 3))
        vlan, mac, port = rng.choice((0, 0, 10)), rng.choice(macs), rng.choice(PORTS)
        op = rng.random()
        if op < 0.80:
            t.learn(vlan, mac, port, now)
            model.learn(vlan, mac, port, now)
        elif op < 0.84:
            t.add_static(vlan, mac, port, now)
            model.add_static(vlan, mac, port, now)
        elif op < 0.88:
            assert t.delete(vlan, mac) == (model.remove((vlan, mac)) is not None)
        elif op < 0.93:
            assert len(t.expire(now)) == model.expire(now)
        elif op < 0.96:
            which = rng.choice((None, port))
            assert t.flush(which) == model.flush(which)
        elif op < 0.98:
            new = rng.choice((2, size, size * 2))
            t.resize(new)
            model.resize(new)
        else:
            assert t.drop_port(port) == model.drop_port(port)
        check_same(t, model, events)
    assert dataclasses.asdict(t.stats) == model.counts


def test_moving_back_and_forth_keeps_one_live_place_per_entry():
    t = MacTable(max_entries=4)
    a = bytes.fromhex("020000000001")
    for n in range(1000):
        t.learn(0, a, PORTS[n % 2], n)
    assert t.eviction_order() == {"p1": [], "p2": [t.get(0, a)]}
    assert all(len(q.items) <= COMPACT_SLACK + 1 for q in t._queues.values())


def test_emptied_vlans_give_their_dicts_back():
    t = MacTable(aging=10)
    for n in range(100):
        t.learn(n % 5, bytes([2, 0, 0, 0, 0, n]), "p1", 0)
    assert len(t.vlans) == 5
    t.learn(3, bytes.fromhex("0200000000ff"), "p2", 5)
    t.expire(10.5)
    assert list(t.vlans) == [3] and len(t) == 1
    t.flush()
    assert t.vlans == {} and len(t) == 0

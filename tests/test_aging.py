"""Aging costs what expires, not the table's size (issue 12, section 5).

The work of expire() is counted, not timed: every entry it examines is read
for its `used` time, so the entries are instrumented to count those reads.
"""

from __future__ import annotations

import pytest

from ovslite import mactable
from ovslite.mactable import MacTable

P1, P2 = "p1", "p2"


class CountingEntry(mactable.MacEntry):
    """A MacEntry that counts how often `used` is read while counting is on."""

    __slots__ = ("_used",)
    reads = 0
    counting = False

    @property
    def used(self):
        if CountingEntry.counting:
            CountingEntry.reads += 1
        return self._used

    @used.setter
    def used(self, value):
        self._used = value


@pytest.fixture
def reads(monkeypatch):
    monkeypatch.setattr(mactable, "MacEntry", CountingEntry)

    def count(fn, *args):
        CountingEntry.reads = 0
        CountingEntry.counting = True
        try:
            result = fn(*args)
        finally:
            CountingEntry.counting = False
        return result, CountingEntry.reads
    return count


def mac(n: int) -> bytes:
    return bytes([0x02, 0, n >> 24 & 0xFF, n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF])


def test_a_pass_reads_the_entries_that_expire_not_the_table(reads):
    t = MacTable(aging=300, max_entries=100_000)
    for n in range(100):
        t.learn(0, mac(n), P1, 10.0)  # these expire at 310
    for n in range(100, 20_100):
        t.learn(n % 3, mac(n), P2, 100.0 + n / 1000)  # live until 400 and later
    aged, read = reads(t.expire, 350.0)
    assert len(aged) == 100 and len(t) == 20_000
    assert read <= 3 * len(aged), f"{read} reads of `used` to expire {len(aged)} of {len(t) + 100}"
    aged, read = reads(t.expire, 351.0)
    assert aged == [] and read == 0


def test_a_refreshed_entry_is_looked_at_once_per_aging_time(reads):
    t = MacTable(aging=300, max_entries=100_000)
    for n in range(5000):
        t.learn(0, mac(n), P1, 0.0)
    for n in range(5000):
        t.learn(0, mac(n), P1, 200.0)  # refreshed: the hot path writes `used` only
    aged, read = reads(t.expire, 301.0)  # filed under second 0: looked at, filed under 200
    assert aged == [] and read <= 2 * 5000
    total = 0
    for now in range(302, 500):
        aged, read = reads(t.expire, float(now))
        assert aged == []
        total += read
    assert total == 0, f"{total} reads in the passes between"
    aged, read = reads(t.expire, 501.0)
    assert len(aged) == 5000 and len(t) == 0


def test_static_entries_are_never_looked_at(reads):
    t = MacTable(aging=10, max_entries=100_000)
    for n in range(5000):
        t.add_static(0, mac(n), P1, 0.0)
    aged, read = reads(t.expire, 10_000.0)
    assert aged == [] and read == 0 and len(t) == 5000


def test_expire_is_exact_within_a_second():
    """Entries are filed by the second, but the limit is the exact aging time."""
    t = MacTable(aging=8)
    t.learn(0, mac(1), P1, 100.2)
    t.learn(0, mac(2), P1, 100.7)
    assert t.expire(108.2) == []
    assert [e.mac for e in t.expire(108.5)] == [mac(1)]
    assert [e.mac for e in t.expire(108.71)] == [mac(2)]


def test_entries_that_leave_otherwise_do_not_pile_up_in_the_wheel():
    t = MacTable(aging=300, max_entries=50)
    for n in range(100_000):  # a flood of new source MACs: each evicts one
        t.learn(0, mac(n), P1 if n % 2 else P2, n / 1000)
    for n in range(1000):  # moves between ports
        t.learn(0, mac(99_999), P1 if n % 2 else P2, 100 + n / 1000)
    t.flush(P1)
    live = len(t)
    assert t.wheel.refs - t.wheel.dead == live
    assert t.wheel.refs <= 2 * live + mactable.COMPACT_SLACK + 1, t.wheel.refs

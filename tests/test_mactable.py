"""MacTable: learning, aging, static entries, moves, fair eviction, flush, events."""

import pytest

from ovslite.mactable import MacTable

V = 0
P1, P2, P3 = "p1", "p2", "p3"


def mac(n: int) -> bytes:
    return bytes([0x02, 0, 0, 0, n >> 8, n & 0xFF])


A, B, C = mac(1), mac(2), mac(3)


def recording(table: MacTable) -> list:
    events = []
    table.listener = lambda kind, entry, old: events.append((kind, entry.mac, entry.port, old))
    return events


# -- learning and lookup -------------------------------------------------------


def test_unknown_mac_is_absent():
    assert MacTable().lookup(V, A, 0) is None


def test_learn_then_lookup():
    t = MacTable()
    t.learn(V, A, P1, 0)
    t.learn(V, B, P2, 0)
    assert t.lookup(V, A, 1) == P1
    assert t.lookup(V, B, 1) == P2
    assert len(t) == 2
    assert t.stats.learned == 2


def test_vlans_are_separate():
    t = MacTable()
    t.learn(1, A, P1, 0)
    assert t.lookup(2, A, 0) is None
    t.learn(2, A, P2, 0)
    assert t.lookup(1, A, 0) == P1
    assert t.lookup(2, A, 0) == P2
    assert t.stats.moved == 0


def test_relearn_on_same_port_refreshes_without_counting():
    t = MacTable(aging=10)
    t.learn(V, A, P1, 0)
    t.learn(V, A, P1, 8)
    assert t.lookup(V, A, 15) == P1  # 15 s after first sight, 7 s after last
    assert t.stats.learned == 1 and t.stats.moved == 0


# -- aging ---------------------------------------------------------------------


def test_entry_exactly_aging_old_is_still_valid():
    t = MacTable(aging=8)
    t.learn(V, A, P1, 100)
    assert t.lookup(V, A, 108) == P1
    assert t.expire(108) == []
    assert t.lookup(V, A, 108) == P1


def test_aged_entry_is_absent_before_expire_runs():
    t = MacTable(aging=8)
    t.learn(V, A, P1, 100)
    assert t.lookup(V, A, 108.5) is None
    assert len(t) == 1  # still stored, but not trusted


def test_expire_removes_and_counts():
    t = MacTable(aging=8)
    t.learn(V, A, P1, 100)
    t.learn(V, B, P1, 100)
    t.learn(V, C, P2, 105)
    aged = t.expire(109)
    assert sorted(e.mac for e in aged) == [A, B]
    assert t.stats.aged == 2
    assert len(t) == 1
    assert t.lookup(V, C, 109) == P2
    assert t.expire(109) == []
    assert t.stats.aged == 2


def test_expired_mac_is_learned_again_as_new():
    t = MacTable(aging=8)
    t.learn(V, A, P1, 0)
    t.expire(20)
    t.learn(V, A, P2, 20)
    assert t.lookup(V, A, 20) == P2
    assert t.stats.learned == 2 and t.stats.moved == 0


# -- static entries ------------------------------------------------------------


def test_static_entry_never_ages():
    t = MacTable(aging=8)
    t.add_static(V, A, P1, 0)
    assert t.lookup(V, A, 10_000) == P1
    assert t.expire(10_000) == []
    assert t.lookup(V, A, 10_000) == P1


def test_static_entry_is_not_moved_by_learning():
    t = MacTable()
    events = recording(t)
    t.add_static(V, A, P1, 0)
    t.learn(V, A, P2, 1)
    assert t.lookup(V, A, 1) == P1
    assert t.stats.moved == 0
    assert events == []


def test_static_replaces_learned_entry():
    t = MacTable()
    t.learn(V, A, P1, 0)
    t.add_static(V, A, P2, 0)
    assert t.lookup(V, A, 1) == P2
    assert len(t) == 1
    assert t.flush(P1) == 0  # nothing of P1 left behind


def test_static_entries_are_never_evicted_nor_counted():
    t = MacTable(max_entries=2)
    t.add_static(V, A, P1, 0)
    t.learn(V, B, P1, 0)
    t.learn(V, C, P1, 1)
    assert t.lookup(V, A, 1) == P1
    assert t.lookup(V, B, 1) == P1 and t.lookup(V, C, 1) == P1
    assert t.stats.evicted == 0 and len(t) == 3
    t.learn(V, mac(4), P1, 2)
    assert t.lookup(V, B, 2) is None and t.lookup(V, A, 2) == P1
    assert t.stats.evicted == 1


def test_table_full_of_statics_still_learns_up_to_its_limit():
    """Static entries do not count toward max_entries, as the kernel's fdb_max_learned
    counts learned entries only: a bridge with many static MACs still learns."""
    t = MacTable(max_entries=2)
    statics = [bytes([2, 0, 0, 0, 1, i]) for i in range(10)]
    for m in statics:
        t.add_static(V, m, P1, 0)
    t.learn(V, B, P2, 0)
    t.learn(V, C, P3, 0)
    assert t.lookup(V, B, 0) == P2 and t.lookup(V, C, 0) == P3
    assert len(t) == 12 and t.stats.learned == 2 and t.stats.evicted == 0
    t.learn(V, mac(4), P3, 1)  # the limit: evicts a learned entry, never a static one
    assert t.stats.evicted == 1 and len(t) == 12
    assert all(t.lookup(V, m, 1) == P1 for m in statics)
    t.resize(1)
    assert len(t) == 11 and all(t.lookup(V, m, 1) == P1 for m in statics)
    t.delete(V, statics[0])
    t.learn(V, A, P2, 2)  # deleting a static entry frees no learning room
    assert len(t) == 10 and t.stats.evicted == 3


def test_delete():
    t = MacTable()
    t.learn(V, A, P1, 0)
    assert t.delete(V, A) is True
    assert t.delete(V, A) is False
    assert t.lookup(V, A, 0) is None


# -- moves ---------------------------------------------------------------------


def test_mac_move_follows_new_port_and_is_counted():
    t = MacTable()
    events = recording(t)
    t.learn(V, A, P1, 0)
    t.learn(V, A, P2, 1)
    assert t.lookup(V, A, 1) == P2
    assert t.stats.moved == 1
    assert len(t) == 1
    assert events[-1] == ("moved", A, P2, P1)
    assert t.flush(P1) == 0
    assert t.flush(P2) == 1


# -- eviction ------------------------------------------------------------------


def test_flooding_port_evicts_its_own_entries_first():
    t = MacTable(max_entries=4)
    t.learn(V, A, P1, 0)  # a real host on p1
    for n in range(100, 120):  # p2 floods random sources
        t.learn(V, mac(n), P2, n)
    assert t.lookup(V, A, 200) == P1
    assert len(t) == 4
    assert t.stats.evicted == 17
    # p2 keeps its newest three, in learning order
    assert [t.lookup(V, mac(n), 119) for n in (116, 117, 118, 119)] == [None, P2, P2, P2]


def test_eviction_takes_oldest_entry_of_busiest_port():
    t = MacTable(max_entries=3)
    events = recording(t)
    t.learn(V, A, P1, 0)
    t.learn(V, B, P2, 1)
    t.learn(V, C, P2, 2)
    t.learn(V, mac(9), P3, 3)
    assert t.lookup(V, B, 3) is None  # oldest of p2, the port with most entries
    assert t.lookup(V, A, 3) == P1 and t.lookup(V, C, 3) == P2
    assert ("evicted", B, P2, None) in events


def test_eviction_spares_recently_seen_host():
    # A is learned first but keeps talking; B was seen once and went quiet.
    t = MacTable(max_entries=2)
    t.learn(V, A, P1, 0)
    t.learn(V, B, P1, 1)
    t.learn(V, A, P1, 50)
    t.learn(V, C, P1, 51)
    assert t.lookup(V, A, 51) == P1, "the least recently seen entry (B) should go"
    assert t.lookup(V, B, 51) is None


def test_moved_entry_is_evicted_as_part_of_new_port():
    t = MacTable(max_entries=3)
    t.learn(V, A, P1, 0)
    t.learn(V, B, P2, 1)
    t.learn(V, A, P2, 2)  # A moves to p2: p2 now holds 2
    t.learn(V, C, P1, 3)  # p1: C only
    t.learn(V, mac(9), P3, 4)  # full: evict oldest of p2 (B)
    assert t.lookup(V, B, 4) is None
    assert t.lookup(V, A, 4) == P2 and t.lookup(V, C, 4) == P1


# -- flush ---------------------------------------------------------------------


def fill(t: MacTable) -> None:
    t.learn(V, A, P1, 0)
    t.learn(V, B, P1, 0)
    t.learn(V, C, P2, 0)
    t.add_static(V, mac(9), P1, 0)


def test_flush_all_keeps_static():
    t = MacTable()
    fill(t)
    assert t.flush() == 3
    assert len(t) == 1 and t.lookup(V, mac(9), 0) == P1


def test_flush_one_port():
    t = MacTable()
    fill(t)
    assert t.flush(P1) == 2
    assert t.lookup(V, A, 0) is None and t.lookup(V, B, 0) is None
    assert t.lookup(V, C, 0) == P2 and t.lookup(V, mac(9), 0) == P1


@pytest.mark.parametrize("port, left", [(None, 0), (P1, 1)])
def test_flush_include_static(port, left):
    t = MacTable()
    fill(t)
    assert t.flush(port, include_static=True) == 4 - left
    assert len(t) == left


def test_table_works_after_flush():
    t = MacTable(max_entries=2)
    t.learn(V, A, P1, 0)
    t.add_static(V, B, P2, 0)
    assert t.flush(include_static=True) == 2
    for n in range(10):
        t.learn(V, mac(n), P1, n)
    assert len(t) == 2 and t.lookup(V, mac(9), 9) == P1


# -- listener ------------------------------------------------------------------


def test_listener_sees_learned_moved_aged_evicted():
    t = MacTable(aging=8, max_entries=3)
    events = recording(t)
    D = mac(4)
    t.learn(V, A, P1, 0)
    t.learn(V, A, P2, 1)
    t.learn(V, B, P1, 2)
    t.learn(V, D, P2, 3)
    t.learn(V, C, P3, 4)  # full: p2 holds most, A is its oldest
    t.expire(20)
    assert events == [
        ("learned", A, P1, None),
        ("moved", A, P2, P1),
        ("learned", B, P1, None),
        ("learned", D, P2, None),
        ("evicted", A, P2, None),
        ("learned", C, P3, None),
        ("aged", B, P1, None),
        ("aged", D, P2, None),
        ("aged", C, P3, None),
    ]

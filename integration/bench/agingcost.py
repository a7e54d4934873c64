"""What one aging pass of the MAC table costs: `python -m integration.bench.agingcost [--quick]`.

The MacTable alone, in this process (no root, no switch): 100,000 learned
entries, aging time 300 s, learned one after another over those 300 s, then
one expire() pass timed (median of a few, each on a fresh table):

- aging_none: none of them expires (the pass the timer makes every second
  while a big table is busy);
- aging_1000: 1,000 of the 100,000 learned just before the rest expire;
- aging_refile: none expires, but every entry was used again after it was
  filed: the pass files again those filed in the second now due (a steady
  table in steady use);
- aging_burst: the same, but all 100,000 were learned in one second: the
  one pass that finds them due files them all again (the worst pass; once an
  aging time after such a burst).

Also `*_visited`: the entries the pass looked at (the table's wheel counter;
absent on a table without one). Reported, never asserted: times on a shared
2-CPU VM are noisy.
"""

from __future__ import annotations

import statistics
import sys
import time

from ovslite.mactable import MacTable

ENTRIES = 100_000
EXPIRING = 1_000
AGING = 300.0
START = 1000.0
KEYS = ("aging_none_us", "aging_1000_us", "aging_refile_us", "aging_burst_us")


def _mac(n: int) -> bytes:
    return bytes([2, 0, n >> 24 & 0xFF, n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF])


def _table(expiring: int, refreshed: bool, spread: float) -> tuple[MacTable, float]:
    """A table of ENTRIES entries learned over `spread` seconds, `expiring` of
    them due at the returned `now`."""
    t = MacTable(aging=AGING, max_entries=ENTRIES)
    live = ENTRIES - expiring
    for n in range(expiring):  # in the second before the others: due at `now`
        t.learn(0, _mac(n), "p1", START - 1 + n / expiring)
    for n in range(live):
        t.learn(0, _mac(expiring + n), "p2", START + spread * n / live)
    now = START + AGING + (1.5 if spread < AGING else 0)  # a burst's second wholly due
    if refreshed:
        for n in range(expiring, ENTRIES):
            t.get(0, _mac(n)).used = now - 0.5  # what the forwarding path does: a write
    return t, now


def _pass(expiring: int, refreshed: bool, spread: float, repeat: int) -> tuple[float, int | None]:
    """(median microseconds of one expire() pass, entries it visited)."""
    times, visited = [], None
    for _ in range(repeat):
        t, now = _table(expiring, refreshed, spread)
        wheel = getattr(t, "wheel", None)
        before = wheel.visited if wheel is not None else 0
        t0 = time.perf_counter()
        aged = t.expire(now)
        times.append((time.perf_counter() - t0) * 1e6)
        assert len(aged) == expiring, f"{len(aged)} aged, expected {expiring}"
        if wheel is not None:
            visited = wheel.visited - before
    return statistics.median(times), visited


def measure(quick: bool = False) -> dict:
    repeat = 3 if quick else 7
    m: dict = {}
    for key, expiring, refreshed, spread in (
            ("aging_none", 0, False, AGING), ("aging_1000", EXPIRING, False, AGING),
            ("aging_refile", 0, True, AGING), ("aging_burst", 0, True, 0.9)):
        us, visited = _pass(expiring, refreshed, spread, repeat)
        m[f"{key}_us"] = us
        if visited is not None:
            m[f"{key}_visited"] = visited
    return m


def main(argv: list[str]) -> int:
    m = measure("--quick" in argv)
    for key, value in m.items():
        print(f"{key:22} {value:12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""When learned MAC entries are due for aging, without scanning the table.

A timing wheel of one-second buckets: an entry is filed under the second of
its `used` time when it is learned. The hot paths (learning, the flow cache)
refresh an entry by writing `used` and nothing else, so the wheel only knows
the time an entry was filed at, never later than its real last use. A pass
with aging limit L (now - aging time) opens the buckets of seconds before L:
an entry there not used since L is expired; one used since (refreshed) is
filed again under the second of its `used`, the earliest it can expire.

Cost of a pass: the entries that expire, plus the refreshed entries whose
filed second went past L (each such entry at most once per aging time:
about size / aging a second spread out, 333/s for 100,000 entries and 300 s,
where a full scan visited them all every second), plus the bucket of L's own
second, read whole because only part of it is due (the entries filed within
one second; the next pass, a second later, finds that bucket wholly due).
Nothing is visited because the table is big.

Entries that leave the table otherwise (moved, deleted, evicted, flushed)
are not looked for in their bucket: the table sets their `queued` to None
(its mark for "in no queue") and calls gone(); the wheel drops such
references when it meets them, and rebuilds itself once they outnumber the
live ones (plus `slack`), so it holds at most about twice the learned
entries. Static entries are never filed.
"""

from __future__ import annotations

import heapq
import math


class AgingWheel:
    __slots__ = ("buckets", "keys", "refs", "dead", "visited")

    def __init__(self):
        #: second -> entries filed under it (some may have left the table)
        self.buckets: dict[int, list] = {}
        #: the buckets' seconds, a min-heap
        self.keys: list[int] = []
        #: references held, and how many of them point at entries that left
        self.refs = 0
        self.dead = 0
        #: entries looked at by due(), over the wheel's life (for tests and the bench)
        self.visited = 0

    def add(self, entry) -> None:
        self._file(entry, math.floor(entry.used))
        self.refs += 1

    def _file(self, entry, second: int) -> None:
        bucket = self.buckets.get(second)
        if bucket is None:
            bucket = self.buckets[second] = []
            heapq.heappush(self.keys, second)
        bucket.append(entry)

    def gone(self, slack: int) -> None:
        """An entry filed here has left the table."""
        self.dead += 1
        self._bound(slack)

    def _bound(self, slack: int) -> None:
        if self.dead > self.refs - self.dead + slack:
            self._compact()  # each dead reference is dropped once: O(1) a removal

    def _compact(self) -> None:
        for second in list(self.buckets):
            live = [e for e in self.buckets[second] if e.queued is not None]
            if live:
                self.buckets[second] = live
            else:
                del self.buckets[second]
        self.keys = sorted(self.buckets)
        self.refs -= self.dead
        self.dead = 0

    def due(self, limit: float, slack: int) -> list:
        """Take out and return the entries still in the table and not used since `limit`."""
        last = math.floor(limit)
        keys, buckets = self.keys, self.buckets
        out: list = []
        while keys and keys[0] <= last:
            second = keys[0]
            bucket = buckets[second]
            self.visited += len(bucket)
            keep = []
            for e in bucket:
                if e.queued is None:
                    self.dead -= 1
                    self.refs -= 1
                elif e.used < limit:
                    out.append(e)
                    self.refs -= 1
                else:
                    refiled = math.floor(e.used)
                    if refiled == second:
                        keep.append(e)  # in the bucket of `limit` itself, not due yet
                    else:
                        self._file(e, refiled)
            if keep:
                buckets[second] = keep
                break  # the bucket of `limit`: the ones after it are not due
            del buckets[second]
            heapq.heappop(keys)
        if out:
            self._bound(slack)  # fewer live entries now
        return out

"""MAC learning table: (VLAN, MAC) -> port, with aging and fair eviction.

Design, after Open vSwitch's lib/mac-learning.h:
- One dict per VLAN (`vlans[vlan]`), keyed by the 6-byte MAC itself, holds the
  entries. The bridge fetches a VLAN's dict when the VLAN changes (`table`), so
  a frame's lookup is one probe with the frame's own MAC slice as the key.
- Time is passed in (`now`, seconds from any monotonic clock), never read here,
  so the table is deterministic under test.
- An entry older than `aging` seconds is treated as absent by `lookup` at once;
  `expire` removes such entries in bulk and is called from a timer, not per frame.
  It finds them in a timing wheel (ovslite/aging.py), so a pass costs what
  expires, not the table's size; refreshing an entry stays one attribute write.
- Static entries (fdb-add) never age, are never moved by learning, never evicted,
  and do not count toward `max_entries`, which bounds learning (as the kernel's
  fdb_max_learned): a table holding many static entries still learns up to its
  limit. The static entries are bounded by the configuration instead.
- When the table is full, a new MAC evicts the least recently seen entry of the
  port that holds the most entries, so one port flooding random source MACs
  pushes out its own entries first, not every other port's hosts. Recency is
  kept without per-frame work: each port's entries sit in a queue in the order
  they were queued; eviction gives an entry seen since it was queued a second
  chance (back of the queue) and evicts the first one that was not.
- Ports are compared by identity (they are the bridge's Port objects).
Limits: the table does not rate-limit learning; a MAC move is accepted at once.

Memory (issue #5: 100k MACs): per learned entry a MacEntry (80 B), its MAC
(48 B, the key too), a dict slot (~50 B at 100k), 8 B of queue and 8 B or so
in the aging wheel: 193 B by `python -m integration.bench.memprobe table`
(183 B before the wheel; 297 B with a (vlan, mac) tuple key and a dict per
port, as before). So no per-entry key tuple,
and the eviction queues are deques (8 B a slot) rather than dicts: an entry
leaving a queue (moved, deleted, aged) is only marked (`queued = None`) and
skipped later; a queue that becomes mostly such marks is compacted. A moved
entry is a new MacEntry, so a marked object is never live in any queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass

from .aging import AgingWheel

DEFAULT_AGING = 300.0
DEFAULT_SIZE = 8192
#: a queue holding more than twice its live entries plus this is compacted
COMPACT_SLACK = 64


class MacEntry:
    __slots__ = ("vlan", "mac", "port", "used", "static", "queued")

    def __init__(self, vlan: int, mac: bytes, port: Hashable, used: float, static: bool = False):
        self.vlan = vlan
        self.mac = mac
        self.port = port
        self.used = used
        self.static = static
        #: when it took its place in its port's eviction queue; None: in no queue
        self.queued = None if static else used


@dataclass
class MacStats:
    learned: int = 0
    moved: int = 0
    aged: int = 0
    evicted: int = 0


class _Queue:
    """One port's learned entries, oldest first; `live` of `items` are still queued."""

    __slots__ = ("items", "live")

    def __init__(self):
        self.items: deque[MacEntry] = deque()
        self.live = 0


class Entries(Mapping):
    """A read-only (vlan, mac) -> MacEntry view of a table, for the control side and
    tests; forwarding uses the per-VLAN dicts directly."""

    __slots__ = ("_vlans", "_table")

    def __init__(self, table: MacTable):
        self._table = table
        self._vlans = table.vlans

    def __getitem__(self, key: tuple[int, bytes]) -> MacEntry:
        vlan, mac = key
        return self._vlans[vlan][mac]

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return ((e.vlan, e.mac) for e in self.values())

    def values(self) -> Iterator[MacEntry]:  # type: ignore[override]
        return (e for t in self._vlans.values() for e in t.values())

    def items(self) -> Iterator[tuple[tuple[int, bytes], MacEntry]]:  # type: ignore[override]
        return (((e.vlan, e.mac), e) for e in self.values())


class MacTable:
    def __init__(self, aging: float = DEFAULT_AGING, max_entries: int = DEFAULT_SIZE):
        self.aging = float(aging)
        self.max_entries = int(max_entries)
        #: vlan -> {mac: MacEntry}; read per frame by the bridge
        self.vlans: dict[int, dict[bytes, MacEntry]] = {}
        self.entries = Entries(self)
        self._count = 0
        self._static = 0  # of _count; learning is bounded by the others
        # Learned entries per port, in eviction order (ports in first-learned order).
        self._queues: dict[Hashable, _Queue] = {}
        #: learned entries by when they may next be due for aging
        self.wheel = AgingWheel()
        self.stats = MacStats()
        #: called as listener(kind, entry, old_port) on learned/moved/aged/evicted
        self.listener: Callable | None = None

    def __len__(self) -> int:
        return self._count

    def table(self, vlan: int) -> dict[bytes, MacEntry]:
        """`vlan`'s entries by MAC, created if absent (kept until a bulk removal empties it)."""
        t = self.vlans.get(vlan)
        if t is None:
            t = self.vlans[vlan] = {}
        return t

    def get(self, vlan: int, mac: bytes) -> MacEntry | None:
        t = self.vlans.get(vlan)
        return None if t is None else t.get(mac)

    def lookup(self, vlan: int, mac: bytes, now: float):
        """The port `mac` was last seen on in `vlan`, or None if unknown or aged."""
        entry = self.get(vlan, mac)
        if entry is None:
            return None
        if not entry.static and now - entry.used > self.aging:
            return None
        return entry.port

    def learn(self, vlan: int, mac: bytes, port: Hashable, now: float) -> None:
        """Record that `mac` was seen as a source on `port` at `now`."""
        t = self.vlans.get(vlan)
        if t is None:
            t = self.vlans[vlan] = {}
        entry = t.get(mac)
        if entry is not None:
            if entry.port is port:
                entry.used = now
                return
            if entry.static:
                return
            self._dequeue(entry)
            moved = t[mac] = MacEntry(vlan, mac, port, now)
            self._enqueue(moved)
            self.stats.moved += 1
            self._event("moved", moved, entry.port)
            return
        # Eviction never drops a VLAN's dict, so `t` is still the table's.
        if self._count - self._static >= self.max_entries and not self._evict_one():
            return
        entry = t[mac] = MacEntry(vlan, mac, port, now)
        self._count += 1
        self._enqueue(entry)
        self.stats.learned += 1
        self._event("learned", entry, None)

    def _fullest(self) -> _Queue | None:
        """The queue of the port with the most learned entries (the first such port)."""
        best = None
        for q in self._queues.values():
            if q.live and (best is None or q.live > best.live):
                best = q
        return best

    def _evict_one(self) -> bool:
        q = self._fullest()
        if q is None:
            return False
        items = q.items
        for _ in range(q.live):
            entry = items.popleft()
            while entry.queued is None:  # left the queue since: drop the mark
                entry = items.popleft()
            if entry.used <= entry.queued:
                break
            entry.queued = entry.used  # seen since queued: second chance
            items.append(entry)
        else:
            entry = items.popleft()  # everyone was refreshed: the front is now oldest
            while entry.queued is None:
                entry = items.popleft()
        entry.queued = None
        self.wheel.gone(COMPACT_SLACK)
        q.live -= 1
        del self.vlans[entry.vlan][entry.mac]
        self._count -= 1
        self.stats.evicted += 1
        self._event("evicted", entry, None)
        return True

    def victim(self) -> MacEntry | None:
        """The entry a full table would evict next, found without changing anything."""
        q = self._fullest()
        if q is None:
            return None
        first = None
        for e in q.items:
            if e.queued is None:
                continue
            if e.used <= e.queued:
                return e
            if first is None:
                first = e
        return first

    def eviction_order(self) -> dict[Hashable, list[MacEntry]]:
        """Each port's queued entries, next victim first (for tests and debugging)."""
        return {p: [e for e in q.items if e.queued is not None] for p, q in self._queues.items()}

    def _enqueue(self, entry: MacEntry) -> None:
        q = self._queues.get(entry.port)
        if q is None:
            q = self._queues[entry.port] = _Queue()
        q.items.append(entry)
        q.live += 1
        self.wheel.add(entry)

    def _dequeue(self, entry: MacEntry, filed: bool = True) -> None:
        """Take a learned entry out of its port's queue (and, if `filed`, the aging
        wheel): mark it, compact if mostly marks."""
        entry.queued = None
        if filed:
            self.wheel.gone(COMPACT_SLACK)
        q = self._queues[entry.port]
        q.live -= 1
        if not q.live:
            q.items.clear()
        elif len(q.items) > 2 * q.live + COMPACT_SLACK:
            q.items = deque(e for e in q.items if e.queued is not None)

    def resize(self, max_entries: int) -> None:
        """A new limit of learned entries; a smaller one evicts (fairly) down to it at once."""
        self.max_entries = max_entries
        while self._count - self._static > max_entries and self._evict_one():
            pass

    def add_static(self, vlan: int, mac: bytes, port: Hashable, now: float) -> None:
        t = self.table(vlan)
        old = t.get(mac)
        if old is not None:
            self._remove(old)
        t[mac] = MacEntry(vlan, mac, port, now, static=True)
        self._count += 1
        self._static += 1

    def delete(self, vlan: int, mac: bytes) -> bool:
        entry = self.get(vlan, mac)
        if entry is not None:
            self._remove(entry)
        return entry is not None

    def _remove(self, entry: MacEntry, filed: bool = True) -> None:
        del self.vlans[entry.vlan][entry.mac]
        self._count -= 1
        if entry.static:
            self._static -= 1
        else:
            self._dequeue(entry, filed)

    def _drop_empty(self) -> None:
        """Free the dicts of VLANs left without entries (a dict never shrinks by itself).
        Only from bulk removals: never while a caller may hold a VLAN's dict."""
        for vlan in [v for v, t in self.vlans.items() if not t]:
            del self.vlans[vlan]

    def expire(self, now: float) -> list[MacEntry]:
        """Remove learned entries older than the aging time; return them (and report
        them to the listener) least recently used first."""
        aged = self.wheel.due(now - self.aging, COMPACT_SLACK)
        aged.sort(key=lambda e: (e.used, e.vlan, e.mac))
        for entry in aged:
            self._remove(entry, filed=False)  # the wheel has let go of it
            self._event("aged", entry, None)
        self.stats.aged += len(aged)
        if aged:
            self._drop_empty()
        return aged

    def flush(self, port: Hashable | None = None, include_static: bool = False) -> int:
        """Forget learned entries (of one port, or all); return how many."""
        doomed = [
            e
            for e in self.entries.values()
            if (port is None or e.port is port) and (include_static or not e.static)
        ]
        for entry in doomed:
            self._remove(entry)
        self._drop_empty()
        return len(doomed)

    def drop_port(self, port: Hashable) -> int:
        """Forget every entry of a port that leaves the bridge, and its queue."""
        count = self.flush(port, include_static=True)
        self._queues.pop(port, None)
        return count

    def _event(self, kind: str, entry: MacEntry, old_port) -> None:
        if self.listener is not None:
            self.listener(kind, entry, old_port)

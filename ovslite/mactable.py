"""MAC learning table: (VLAN, MAC) -> port, with aging and fair eviction.

Design, after Open vSwitch's lib/mac-learning.h:
- One dict keyed by (vlan, mac) holds every entry; lookups are one dict probe.
- Time is passed in (`now`, seconds from any monotonic clock), never read here,
  so the table is deterministic under test.
- An entry older than `aging` seconds is treated as absent by `lookup` at once;
  `expire` removes such entries in bulk and is called from a timer, not per frame.
- Static entries (fdb-add) never age, are never moved by learning, never evicted.
- When the table is full, a new MAC evicts the least recently seen entry of the
  port that holds the most entries, so one port flooding random source MACs
  pushes out its own entries first, not every other port's hosts. Recency is
  kept without per-frame work: each port's entries sit in a queue in the order
  they were queued; eviction gives an entry seen since it was queued a second
  chance (back of the queue) and evicts the first one that was not.
- Ports are compared by identity (they are the bridge's Port objects).
Limits: the table does not rate-limit learning; a MAC move is accepted at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

DEFAULT_AGING = 300.0
DEFAULT_SIZE = 8192


class MacEntry:
    __slots__ = ("vlan", "mac", "port", "used", "static", "queued")

    def __init__(self, vlan: int, mac: bytes, port: Hashable, used: float, static: bool = False):
        self.vlan = vlan
        self.mac = mac
        self.port = port
        self.used = used
        self.static = static
        self.queued = used  # when it took its place in the port's eviction queue


@dataclass
class MacStats:
    learned: int = 0
    moved: int = 0
    aged: int = 0
    evicted: int = 0


class MacTable:
    def __init__(self, aging: float = DEFAULT_AGING, max_entries: int = DEFAULT_SIZE):
        self.aging = float(aging)
        self.max_entries = int(max_entries)
        self.entries: dict[tuple[int, bytes], MacEntry] = {}
        # Learned (non-static) keys per port, oldest first: the eviction order.
        self._by_port: dict[Hashable, dict[tuple[int, bytes], None]] = {}
        self.stats = MacStats()
        #: called as listener(kind, entry, old_port) on learned/moved/aged/evicted
        self.listener: Callable | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, vlan: int, mac: bytes, now: float):
        """The port `mac` was last seen on in `vlan`, or None if unknown or aged."""
        entry = self.entries.get((vlan, mac))
        if entry is None:
            return None
        if not entry.static and now - entry.used > self.aging:
            return None
        return entry.port

    def learn(self, vlan: int, mac: bytes, port: Hashable, now: float) -> None:
        """Record that `mac` was seen as a source on `port` at `now`."""
        key = (vlan, mac)
        entry = self.entries.get(key)
        if entry is not None:
            if entry.port is port:
                entry.used = now
                return
            if entry.static:
                return
            old = entry.port
            del self._by_port[old][key]
            entry.port = port
            entry.used = entry.queued = now
            self._by_port.setdefault(port, {})[key] = None
            self.stats.moved += 1
            self._event("moved", entry, old)
            return
        if len(self.entries) >= self.max_entries and not self._evict_one():
            return
        entry = MacEntry(vlan, mac, port, now)
        self.entries[key] = entry
        self._by_port.setdefault(port, {})[key] = None
        self.stats.learned += 1
        self._event("learned", entry, None)

    def _evict_one(self) -> bool:
        victims = [(len(keys), p) for p, keys in self._by_port.items() if keys]
        if not victims:
            return False
        _, port = max(victims, key=lambda v: v[0])
        keys = self._by_port[port]
        entries = self.entries
        for _ in range(len(keys)):
            key = next(iter(keys))
            del keys[key]
            entry = entries[key]
            if entry.used <= entry.queued:
                break
            entry.queued = entry.used  # seen since queued: second chance
            keys[key] = None
        else:
            key = next(iter(keys))  # everyone was refreshed: the front is now oldest
            del keys[key]
        entry = entries.pop(key)
        self.stats.evicted += 1
        self._event("evicted", entry, None)
        return True

    def resize(self, max_entries: int) -> None:
        """A new size limit; a smaller table evicts (fairly) down to it at once."""
        self.max_entries = max_entries
        while len(self.entries) > max_entries and self._evict_one():
            pass

    def add_static(self, vlan: int, mac: bytes, port: Hashable, now: float) -> None:
        self._remove((vlan, mac))
        self.entries[(vlan, mac)] = MacEntry(vlan, mac, port, now, static=True)

    def delete(self, vlan: int, mac: bytes) -> bool:
        return self._remove((vlan, mac)) is not None

    def _remove(self, key):
        entry = self.entries.pop(key, None)
        if entry is not None and not entry.static:
            self._by_port[entry.port].pop(key, None)
        return entry

    def expire(self, now: float) -> list[MacEntry]:
        """Remove learned entries older than the aging time; return them."""
        limit = now - self.aging
        aged = [e for e in self.entries.values() if not e.static and e.used < limit]
        for entry in aged:
            self._remove((entry.vlan, entry.mac))
            self._event("aged", entry, None)
        self.stats.aged += len(aged)
        return aged

    def flush(self, port: Hashable | None = None, include_static: bool = False) -> int:
        """Forget learned entries (of one port, or all); return how many."""
        doomed = [
            key
            for key, e in self.entries.items()
            if (port is None or e.port is port) and (include_static or not e.static)
        ]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def _event(self, kind: str, entry: MacEntry, old_port) -> None:
        if self.listener is not None:
            self.listener(kind, entry, old_port)

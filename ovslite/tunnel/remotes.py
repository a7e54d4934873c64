"""A tunnel port with several remotes: which remote each inner MAC is behind,
and what went to and came from each remote.

Learned from received frames (the source MAC of a frame from remote R is
behind R), bounded (the least recently learned entry goes first) and aged like
the bridge's default (300 s). A MAC pinned by `fdb-add ... --remote` wins over
what is learned and is never aged. The counters are per remote: frames and
inner bytes received from it, and handed to the send path for it (head-end
replication counts a flooded frame once per remote). Time is passed in
(time.monotonic() seconds); nothing here does I/O.
"""

from __future__ import annotations

#: inner MACs remembered per port, and for how long (the bridge's default aging)
MAX_MACS = 8192
AGING = 300.0
COUNTER_NAMES = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


class RemoteMap:
    __slots__ = ("learned", "pinned", "counts")

    def __init__(self, remotes: list[str]):
        #: inner source MAC -> (remote, when learned), oldest first
        self.learned: dict[bytes, tuple[str, float]] = {}
        #: inner MAC -> remote, from fdb-add --remote
        self.pinned: dict[bytes, str] = {}
        #: remote -> [rx frames, rx bytes, tx frames, tx bytes]
        self.counts: dict[str, list[int]] = {r: [0, 0, 0, 0] for r in remotes}

    def learn(self, src: bytes, remote: str, size: int, now: float) -> None:
        """A frame of `size` bytes from `remote` with source MAC `src`."""
        counts = self.counts.get(remote)
        if counts is not None:
            counts[0] += 1
            counts[1] += size
        learned = self.learned
        learned.pop(src, None)
        learned[src] = (remote, now)
        if len(learned) > MAX_MACS:
            del learned[next(iter(learned))]

    def remote_of(self, mac: bytes, now: float) -> str | None:
        """The remote `mac` is behind: pinned, else learned and not aged; else None."""
        remote = self.pinned.get(mac)
        if remote is not None:
            return remote
        entry = self.learned.get(mac)
        if entry is None or now - entry[1] > AGING:
            return None
        return entry[0]

    def pin(self, pins: dict[bytes, str]) -> None:
        """Replace the pins (those naming a remote the port does not have are ignored:
        the configuration check refuses them before they get here)."""
        self.pinned = {mac: r for mac, r in pins.items() if r in self.counts}

    def sent(self, destinations: list[tuple], size: int) -> None:
        for remote, _ in destinations:
            counts = self.counts[remote]
            counts[2] += 1
            counts[3] += size

    def stats(self) -> dict[str, dict[str, int]]:
        return {r: dict(zip(COUNTER_NAMES, c, strict=True)) for r, c in self.counts.items()}

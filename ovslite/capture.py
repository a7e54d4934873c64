"""Capture on any port: a bounded queue between a port's tap and one client.

The datapath calls a port's taps only when a capture is attached to that port
(one dict probe per batch otherwise, so an idle capture facility costs nothing
per frame). A tap copies the frames it takes (the receive buffer belongs to
the dataplane) into a bounded deque; when the client reading the capture is
slower than the traffic, frames that do not fit are dropped from the capture
and counted, never from the dataplane. The writer side (the control server)
is woken through `on_ready` and drains with `take`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .vnet import VNET_HDR_LEN

DIRECTIONS = ("in", "out", "both")
QUEUE_LIMIT = 4096
SNAPLEN = 65000  # per frame, so one frame and its headers fit in a control message


class Capture:
    def __init__(
        self,
        port_name: str,
        direction: str = "both",
        count: int = 0,
        limit: int = QUEUE_LIMIT,
        snaplen: int = SNAPLEN,
        clock: Callable[[], float] = time.time,
    ):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        self.port_name = port_name
        self.wanted = ("in", "out") if direction == "both" else (direction,)
        self.remaining = count if count > 0 else -1  # frames still to take; -1: no limit
        self.limit = limit
        self.snaplen = snaplen
        self.clock = clock
        self.queue: deque = deque()
        self.captured = 0
        self.dropped = 0
        self.on_ready: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def __call__(self, direction: str, packets: list) -> None:
        if direction not in self.wanted or self.remaining == 0:
            return
        now = self.clock()
        queue = self.queue
        room = self.limit - len(queue)
        for pkt in packets:
            if self.remaining == 0:
                break
            if room <= 0:
                self.dropped += 1
                continue
            frame_len = len(pkt) - VNET_HDR_LEN
            queue.append((now, direction, frame_len, bytes(pkt[VNET_HDR_LEN : VNET_HDR_LEN + self.snaplen])))
            room -= 1
            self.captured += 1
            if self.remaining > 0:
                self.remaining -= 1
        if self.on_ready is not None and queue:
            self.on_ready()

    def take(self, n: int = 256) -> list[tuple[float, str, int, bytes]]:
        """Up to `n` captured frames: (unix time, direction, original length, data)."""
        queue = self.queue
        return [queue.popleft() for _ in range(min(n, len(queue)))]

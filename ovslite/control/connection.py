"""One control client: reads requests, writes replies and stream messages.

Design:
- Encoding is the slow part (pyroute2: ~0.1 ms per message), so a dump is
  encoded lazily: at most FLUSH_BUDGET messages per loop pass and only as
  fast as the client reads, and forwarding runs in between. At most one
  encoded reply waits in the queue; the rest are the dump's generator.
- Each connection has one output queue. Replies are never dropped: while a
  connection has replies pending (a slow reader), we stop reading its
  requests. Unsolicited messages (capture, monitor) go through `send_event`,
  which drops when `queue_limit` messages or QUEUE_BYTES are queued and
  counts the drops.
- Streams hook `on_close` and `on_drained` and unhook (`forget`) when they
  end, so a connection that runs many keeps nothing of the finished ones.
Limits: one request at a time per connection; the server (server.py) owns
the socket's lifecycle and the accept limits.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import structlog

from . import messages as m

log = structlog.get_logger("ovslite.control")

#: events a connection may have queued before send_event drops
QUEUE_LIMIT = 1024
#: bytes a connection may have queued before send_event drops (1024 capture messages
#: would be 64 MB)
QUEUE_BYTES = 1 << 20
#: reply messages encoded per loop pass and connection (each is ~0.1-0.5 ms)
FLUSH_BUDGET = 32
#: a dump of this many messages trims the heap when it ends (what it built is freed)
TRIM_AFTER = 256


class Connection:
    """One client: reads requests, writes replies and stream messages."""

    def __init__(self, server, sock: socket.socket, queue_limit: int):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0  # in `queue`
        self.pending: Iterator[bytes] | None = None  # replies not yet encoded
        self.pending_sent = 0  # messages of `pending` encoded so far
        self.queue_limit = queue_limit
        self.dropped = 0
        self.closed = False
        self._reading = False
        self._writing = False
        #: called with the connection when it closes (to stop its streams); a stream
        #: that ends first removes its callbacks (see forget)
        self.on_close: list[Callable[[Connection], None]] = []
        #: called when everything queued has been sent (streams send more then)
        self.on_drained: list[Callable[[], None]] = []
        self._read(True)

    # -- input ----------------------------------------------------------------
    def _read(self, on: bool) -> None:
        if on and not self._reading:
            self.server.loop.add_reader(self.fd, self._on_readable)
        elif not on and self._reading:
            self.server.loop.remove_reader(self.fd)
        self._reading = on

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(m.MAX_MSG_SIZE + 1)  # +1: detect oversized datagrams
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:  # EOF (a zero-length datagram is indistinguishable from it)
            self.close()
            return
        self.send_replies(self.server.dispatch(data, self))

    # -- output ---------------------------------------------------------------
    def send_replies(self, datagrams: Iterable[bytes]) -> None:
        """Send replies (never dropped; encoded lazily) and read no request until done."""
        self.pending = iter(datagrams)
        self.pending_sent = 0
        self._flush()
        if (self.queue or self.pending) and not self.closed:
            self._read(False)

    def send_event(self, datagram: bytes) -> bool:
        """Queue an unsolicited message unless the reader is too slow; True if queued."""
        if (self.closed or len(self.queue) >= self.queue_limit
                or self.queued_bytes + len(datagram) > QUEUE_BYTES):
            self.dropped += 1
            return False
        self.queue.append(datagram)
        self.queued_bytes += len(datagram)
        self._flush()
        return True

    def _flush(self) -> None:
        budget = FLUSH_BUDGET
        while not self.closed:
            if not self.queue:
                if self.pending is None:
                    break
                if budget == 0:  # let the loop run; the writable fd calls us back
                    self._want_writable()
                    return
                budget -= 1
                datagram = next(self.pending, None)
                if datagram is None:
                    self._end_pending()
                    continue
                self.pending_sent += 1
                self.queue.append(datagram)
                self.queued_bytes += len(datagram)
            try:
                self.sock.send(self.queue[0])
            except (BlockingIOError, InterruptedError):
                self._want_writable()
                return
            except OSError:  # EPIPE, ECONNRESET: the client went away
                self.close()
                return
            self.queued_bytes -= len(self.queue.popleft())
        if self.closed:
            return
        if self._writing:
            self.server.loop.remove_writer(self.fd)
            self._writing = False
        self._read(True)
        for callback in list(self.on_drained):  # a stream that ends removes its own
            callback()

    def forget(self, on_close, on_drained) -> None:
        """Drop a finished stream's callbacks: one connection may run many streams."""
        for hooks, callback in ((self.on_close, on_close), (self.on_drained, on_drained)):
            if callback in hooks:
                hooks.remove(callback)

    def _end_pending(self) -> None:
        if self.pending_sent >= TRIM_AFTER:
            self.server.trim_soon()
        self.pending = None
        self.pending_sent = 0

    def _want_writable(self) -> None:
        if not self._writing:
            self.server.loop.add_writer(self.fd, self._flush)
            self._writing = True

    def close(self) -> None:
        if self.closed:
            return
        self._read(False)
        if self._writing:
            self.server.loop.remove_writer(self.fd)
            self._writing = False
        self.closed = True
        self.queue.clear()
        self.queued_bytes = 0
        if self.pending is not None:
            close = getattr(self.pending, "close", None)
            if close is not None:
                close()  # a generator lets go of its snapshot now, not at collection
            self.pending_sent = max(self.pending_sent, TRIM_AFTER)  # abandoned: trim anyway
            self._end_pending()
        self.sock.close()
        self.server.connections.discard(self)
        self.server.connection_closed()
        for callback in list(self.on_close):
            try:
                callback(self)
            except Exception:
                log.exception("connection close callback failed")

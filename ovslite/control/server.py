"""The control socket: netlink-style requests in, Switch calls, replies out.

Design:
- One listening SOCK_SEQPACKET Unix socket; one datagram is one message
  (ovslite.control.messages). Every callback is registered with
  loop.add_reader/add_writer on non-blocking sockets, so nothing here blocks
  the event loop and `close()` can tear everything down synchronously.
- A request is handled to completion before the next datagram of that
  connection is read; handlers are synchronous Switch calls; a dump
  handler returns a generator (see handlers.py).
- Each client is a Connection (connection.py): replies encoded lazily, as
  fast as the client reads, and a bounded queue of unsolicited messages.
- Any exception in a handler becomes an error reply (EIO for surprises, which
  are also logged); a malformed datagram gets an error reply, never a crash.
- What a client can make us hold is bounded: a dump handler returns a
  generator over a list of object references and builds each message's
  values only when the client has read the previous ones, so an unread dump
  costs a few KB, not the whole snapshot (100 unread GET_PORT dumps of 1,200
  ports held 120 MB). After a long dump the heap is trimmed (heap.trim, a
  TRIM_DELAY later, once for a burst of dumps) so the memory goes back.
- Connections are bounded too: at `max_connections`, or when accept() fails
  for want of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM), we stop watching the
  listening socket (newcomers wait in its backlog) and look again when a
  connection closes or after ACCEPT_RETRY seconds. The condition is logged
  once when it starts and once when it clears (the backlog is empty again),
  not per attempt. Watching it instead would spin: the socket stays readable
  while the backlog holds a connection.

Socket ownership: a live socket (one we can connect to) belongs to another
daemon and is never touched; a stale one (ECONNREFUSED) is replaced. On close
we unlink the path only if it is still the socket we bound.
Limits: no authentication beyond file permissions (mode 0660); two daemons
racing through start-up at the same instant are not serialised.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator

import structlog

from .. import heap, trace
from ..switch import SwitchError
from . import messages as m
from .connection import QUEUE_LIMIT, Connection
from .handlers import Handlers
from .monitor import MonitorHub, MonitorStream
from .streams import CaptureStream

log = structlog.get_logger("ovslite.control")

SOCKET_MODE = 0o660
#: connections accepted per wake-up, so an accept storm cannot starve forwarding
ACCEPT_BATCH = 16
#: clients served at once: the unit's LimitNOFILE leaves room for these next to
#: FileDescriptorStoreMax port fds (systemd/ovslite.service)
MAX_CONNECTIONS = 1024
#: seconds between looks at the listening socket while accept() lacks fds
ACCEPT_RETRY = 1.0
#: accept() errors that mean "no fd for it now", not "this connection is bad"
FD_SHORTAGE = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
#: seconds a trim waits for other dumps to end too (one trim for a burst of them)
TRIM_DELAY = 1.0


class ControlSocketError(Exception):
    """The control socket cannot be opened; the message is one user-facing line."""


class ControlServer:
    def __init__(self, switch, path: str, loop, queue_limit: int = QUEUE_LIMIT,
                 max_connections: int = MAX_CONNECTIONS):
        self.switch = switch
        self.path = path
        self.loop = loop
        self.queue_limit = queue_limit
        self.max_connections = max_connections
        self.sock: socket.socket | None = None
        self.connections: set[Connection] = set()
        self._accepting = False  # the listening socket is watched
        self._retry = None  # the ACCEPT_RETRY timer while not accepting
        #: why we stopped accepting (logged once), None while all is well
        self.accept_paused: str | None = None
        self._trim = None  # the pending heap trim timer
        self._closing = False
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        #: one-shot commands (ovslite.control.handlers): cmd -> handler(request)
        self.handlers: dict[m.Cmd, Callable[[m.Request], object]] = Handlers(switch).table()
        self.handlers[m.Cmd.TRACE] = lambda req: trace.handle_request(switch, req.values)
        #: commands whose replies stream: cmd -> class(server, conn, req, seq, pid)
        self.streams = {m.Cmd.CAPTURE: CaptureStream, m.Cmd.MONITOR: MonitorStream}
        #: every running MONITOR, and the switch and MAC table listeners they share
        self.monitors = MonitorHub(switch, loop)

    # -- lifecycle ------------------------------------------------------------
    def open(self) -> None:
        """Bind and listen; ControlSocketError if the path is in use or unusable."""
        path = self.path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise ControlSocketError(f"cannot create directory for {path}: {exc.strerror}") from None
        self._remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.bind(path)
            st = os.stat(path)
            self._identity = (st.st_dev, st.st_ino)
            os.chmod(path, SOCKET_MODE)  # before listen(): nobody can connect yet
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketError(f"another ovslited is already listening on {path}") from None
            self._unlink_ours()
            raise ControlSocketError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        self.sock = sock
        self._watch_accept(True)
        log.info("control socket listening", path=path)

    @staticmethod
    def _remove_stale(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlSocketError(f"cannot check {path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            pass  # nobody listens: stale, left by a daemon that died
        except (TimeoutError, BlockingIOError):  # a full backlog: alive, just busy
            raise ControlSocketError(f"another ovslited is already listening on {path}") from None
        except OSError as exc:
            if exc.errno == errno.EPROTOTYPE:
                raise ControlSocketError(f"{path} is in use by another program") from None
            raise ControlSocketError(f"cannot check {path}: {exc.strerror or exc}") from None
        else:
            raise ControlSocketError(f"another ovslited is already listening on {path}")
        finally:
            probe.close()
        log.warning("removing stale control socket", path=path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ControlSocketError(f"cannot remove stale socket {path}: {exc.strerror}") from None

    def close(self) -> None:
        """Stop listening, drop every connection, unlink our socket file. Idempotent."""
        self._closing = True
        for conn in list(self.connections):
            conn.close()
        for timer in (self._retry, self._trim):
            if timer is not None:
                timer.cancel()
        self._retry = self._trim = None
        if self.sock is not None:
            self._watch_accept(False)
            self.sock.close()
            self.sock = None
            self._unlink_ours()

    def _unlink_ours(self) -> None:
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass
        self._identity = None

    # -- accepting, within bounds -----------------------------------------------
    def _watch_accept(self, on: bool) -> None:
        if on and not self._accepting:
            self.loop.add_reader(self.sock.fileno(), self._on_accept)
        elif not on and self._accepting:
            self.loop.remove_reader(self.sock.fileno())
        self._accepting = on

    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) >= self.max_connections:
                self._pause_accept(f"{len(self.connections)} connections, the most served at once")
                return
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                if self.accept_paused is not None:  # nobody waits any more: it cleared
                    log.info("accepting connections again", connections=len(self.connections),
                             was=self.accept_paused)
                    self.accept_paused = None
                return
            except OSError as exc:
                if exc.errno in FD_SHORTAGE:
                    self._pause_accept(exc.strerror or str(exc))
                    return
                log.warning("accept failed", error=exc.strerror or str(exc))  # ECONNABORTED &c.
                continue
            sock.setblocking(False)
            self.connections.add(Connection(self, sock, self.queue_limit))

    def _pause_accept(self, reason: str) -> None:
        """Stop watching the listening socket until a connection closes or ACCEPT_RETRY."""
        self._watch_accept(False)
        if self.accept_paused is None:
            self.accept_paused = reason
            log.warning("not accepting connections; new clients wait until one closes",
                      reason=reason, connections=len(self.connections))
        if self._retry is None:
            self._retry = self.loop.call_later(ACCEPT_RETRY, self._resume_accept)

    def _resume_accept(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.sock is not None and not self._closing:
            self._watch_accept(True)
            self._on_accept()  # at once: and if nobody waits, the condition has cleared

    def connection_closed(self) -> None:
        """A connection ended: its fd is free, so a waiting client may come in."""
        if self.sock is not None and not self._accepting:
            self._resume_accept()

    # -- giving memory back ---------------------------------------------------------
    def trim_soon(self) -> None:
        """Trim the heap TRIM_DELAY from now: a long dump's messages and values are freed."""
        if self._trim is None:
            self._trim = self.loop.call_later(TRIM_DELAY, self._trim_now)

    def _trim_now(self) -> None:
        self._trim = None
        heap.trim()

    # -- dispatch -------------------------------------------------------------
    def dispatch(self, data: bytes, conn: Connection | None = None) -> Iterable[bytes]:
        """The reply datagrams for one request datagram, lazily for a dump. Never raises.

        `conn` is the requesting connection, for commands that stream to it later.
        """
        try:
            req = m.parse_request(data)
        except m.ProtocolError as exc:
            log.debug("bad request", error=str(exc), size=len(data))
            return [m.encode_error(data, exc.errno, str(exc), exc.offset)]
        except Exception as exc:
            log.error("request parser failed", error=repr(exc), exc_info=exc)
            return [m.encode_error(data, errno.EIO, f"internal error: {exc}")]
        hdr = m.header_of(data)
        seq, pid = hdr["sequence_number"], hdr["pid"]
        try:
            if req.spec.stream:
                if conn is None:
                    raise m.ProtocolError(errno.EOPNOTSUPP, f"{req.cmd.name} needs a connection")
                self.streams[req.cmd](self, conn, req, seq, pid)
                return []  # the stream sends its messages as they come
            result = self.handlers[req.cmd](req)
            if req.spec.dump:
                return self._dump(data, req, result, seq, pid)
            out = [self._encode(req, result, seq, pid, False)] if result is not None else []
            if req.flags & m.NLM_F_ACK:
                out.append(m.encode_error(data, 0))
            return out
        except Exception as exc:
            return [self._error(data, req, exc)]

    def _dump(self, data, req, items, seq, pid) -> Iterator[bytes]:
        """One NLM_F_MULTI message per item, then NLMSG_DONE; NLMSG_ERROR ends a failed dump."""
        items = iter(items)
        while True:
            try:  # a lazy dump builds its values here: its failures end the dump too
                item = next(items, None)
                if item is None:
                    break
                out = self._encode(req, item, seq, pid, True)
            except Exception as exc:
                yield self._error(data, req, exc)
                return
            yield out
        yield m.encode_done(seq, pid)

    @staticmethod
    def _encode(req, values, seq, pid, multi) -> bytes:
        out = m.encode_reply(req.cmd, values, seq, pid, multi=multi)
        if len(out) > m.MAX_MSG_SIZE:
            raise m.ProtocolError(errno.EMSGSIZE, f"reply larger than {m.MAX_MSG_SIZE} bytes")
        return out

    @staticmethod
    def _error(data, req, exc) -> bytes:
        if isinstance(exc, SwitchError | m.ProtocolError):
            return m.encode_error(data, exc.errno, str(exc))
        log.error("control command failed", cmd=req.cmd.name, error=repr(exc), exc_info=exc)
        return m.encode_error(data, errno.EIO, f"internal error in {req.cmd.name}: {exc}")

"""Long-lived replies on a control connection: packet capture (inner frames by a
port tap, or with OUTER a tunnel's encapsulated packets: ovslite.tunnel.outer).

A stream is a dump that lasts: NLM_F_MULTI messages sent as events happen,
ended by NLMSG_DONE when the stream finishes (count reached, port removed) or
by the client closing the connection (Ctrl-C), which detaches the stream.

Flow control: a stream encodes the next message only when the connection has
nothing queued, i.e. only as fast as the client reads. Frames that arrive
meanwhile wait in the Capture's bounded queue and, past its limit, are dropped
from the capture and counted: the dataplane never waits for a reader.

Capture messages carry their frames as classic libpcap records in one
OVSLITE_ATTR_PCAP attribute (the CLI writes them out as they are) and one
direction letter per record in OVSLITE_ATTR_DIRECTIONS: encoding a nested
attribute per frame would cost ~0.1 ms each in pyroute2.
"""

from __future__ import annotations

import errno

import structlog

from .. import pcap
from ..capture import Capture
from ..switch import SwitchError
from . import messages as m

log = structlog.get_logger("ovslite.control")

#: stop adding frames to a message past this many bytes of records
MESSAGE_BUDGET = m.MAX_MSG_SIZE - 512


class CaptureStream:
    def __init__(self, server, conn, req: m.Request, seq: int, pid: int):
        self.switch = server.switch
        self.conn = conn
        self.seq, self.pid = seq, pid
        self.port = self.switch.port(req.values["port"])
        direction = req.values.get("direction", "both")
        try:
            self.capture = Capture(self.port.name, direction, req.values.get("count", 0))
        except ValueError as exc:
            raise SwitchError(errno.EINVAL, str(exc)) from None
        self.finished = False
        self._scheduled = False
        self._loop = server.loop
        # The tap runs inside the forwarding pass: it only queues and asks for a
        # pump on the next loop iteration, so encoding never delays forwarding.
        self.capture.on_ready = self._schedule
        self.outer = None
        if req.values.get("outer"):  # the tunnel's packets on the underlay (ovslite.tunnel.outer)
            self.outer = self._open_outer()
        else:
            self.switch.datapath.taps.setdefault(self.port, []).append(self.capture)
        self.switch.listeners.append(self._on_switch_event)
        conn.on_close.append(self.stop)
        conn.on_drained.append(self.pump)
        log.info("capture started", port=self.port.name, direction=direction)

    def _open_outer(self):
        from ..tunnel.outer import OuterError, OuterTap

        if not hasattr(self.port.netdev, "remotes"):
            raise SwitchError(errno.EINVAL, f"--outer: port {self.port.name} is not a tunnel port "
                              "(vxlan, geneve, gre)")
        try:
            return OuterTap(self.port.netdev, self.capture, self._loop)
        except OuterError as exc:
            raise SwitchError(exc.errno, f"--outer: {exc}") from None

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.pump)

    def pump(self, *_) -> None:
        """Send what the client can take now; finish when the capture is done."""
        self._scheduled = False
        conn, capture = self.conn, self.capture
        if self.finished or conn.closed:
            return
        while not conn.queue and capture.queue and not self.finished:
            conn.send_event(self._message())  # may re-enter pump via on_drained
        if capture.done and not capture.queue and not conn.queue:
            self.finish()

    def _message(self) -> bytes:
        queue = self.capture.queue
        records, directions, size = [], [], 0
        while queue and size < MESSAGE_BUDGET:
            ts, direction, length, data = queue[0]
            cost = len(data) + pcap.RECORD_HEADER.size + 1  # + its letter in DIRECTIONS
            if records and size + cost > MESSAGE_BUDGET:
                break
            queue.popleft()
            records.append(pcap.record(ts, length, data))
            directions.append(direction[0])
            size += cost
        values = {"port": self.port.name, "pcap": b"".join(records), "directions": "".join(directions)}
        return m.encode_reply(m.Cmd.CAPTURE, values, self.seq, self.pid, multi=True)

    def finish(self, reason: str = "") -> None:
        """Send the totals and NLMSG_DONE, then detach."""
        if self.finished:
            return
        self.stop()  # first: sending below may re-enter pump and finish
        capture = self.capture
        summary = {"port": self.port.name, "count": capture.captured, "dropped": capture.dropped}
        if reason:
            summary["reason"] = reason
        self.conn.send_event(m.encode_reply(m.Cmd.CAPTURE, summary, self.seq, self.pid, multi=True))
        self.conn.send_event(m.encode_done(self.seq, self.pid))

    def stop(self, *_) -> None:
        if self.finished:
            return
        self.finished = True
        self.conn.forget(self.stop, self.pump)
        if self.outer is not None:
            self.outer.close()
        taps = self.switch.datapath.taps.get(self.port)
        if taps and self.capture in taps:
            taps.remove(self.capture)
            if not taps:
                del self.switch.datapath.taps[self.port]
        if self._on_switch_event in self.switch.listeners:
            self.switch.listeners.remove(self._on_switch_event)
        log.info("capture stopped", port=self.port.name, captured=self.capture.captured,
                 dropped=self.capture.dropped)

    def _on_switch_event(self, event: str, **fields) -> None:
        if event == "port-removed" and fields.get("port") == self.port.name:
            self.capture.queue.clear()
            self.finish(f"port {self.port.name} was removed")

"""The I/O edge: wait on port fds, drain batches, run the bridge, send outputs.

Each port with a file descriptor gets a reader callback on the event loop
(two if it has a backlog queue too, as a system port's spill socket).
A wake-up drains at most BATCH frames (the fd is level-triggered, so a busy
port is called again on the next loop pass and cannot starve the others),
reads the clock once, and hands the batch to `receive`: frames of a cached
flow (ovslite.flows) go straight to their final port, the rest to the
port's bridge (`input`, the slow path). Outputs go straight to the egress
netdevs; a provider without an fd (patch) feeds its peer bridge through
`input` in the same pass, with `depth` bounding loops. A bridge with port
mirrors (ovslite.mirror) also returns copies, sent after the batch's frames
with the same non-blocking sends: an output that cannot take them (its ring or
socket buffer, the bounded queue, is full) loses them, counted per mirror.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from . import mirror
from .bridge import Port
from .flows import MAX_DEPTH, FlowCache
from .vnet import VNET_HDR_LEN

BATCH = 64


class Datapath:
    def __init__(self, loop, clock: Callable[[], float] = time.monotonic):
        self.loop = loop
        self.clock = clock
        self._fds: dict[Port, tuple[int, ...]] = {}
        #: port -> list of callables(direction, packets); empty for most ports
        self.taps: dict[Port, list[Callable]] = {}
        self.flows = FlowCache()

    def attach(self, port: Port) -> None:
        netdev = port.netdev
        fds = []
        fd = netdev.fileno()
        if fd is not None:
            self.loop.add_reader(fd, self._on_readable, port)
            fds.append(fd)
        backlog = netdev.backlog_fileno()
        if backlog is not None:
            self.loop.add_reader(backlog, self._on_backlog, port)
            fds.append(backlog)
            # frames may wait outside any fd (an abandoned ring's)
            self.loop.call_soon(self._on_backlog, port)
        if fds:
            self._fds[port] = tuple(fds)

    def detach(self, port: Port) -> None:
        self.flows.forget_port(port)
        for fd in self._fds.pop(port, ()):
            self.loop.remove_reader(fd)

    def rearm(self, port: Port) -> None:
        """Clear pending socket errors on the port's fds and watch them again."""
        self.detach(port)
        netdev = port.netdev
        for fd in (netdev.fileno(), netdev.backlog_fileno()):
            if fd is None:
                continue
            copy = os.dup(fd)
            try:
                probe = socket.socket(fileno=copy)  # takes over `copy`
            except OSError:  # not a socket (a TAP fd): nothing to clear
                os.close(copy)
            else:
                try:
                    probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading clears it
                except OSError:
                    pass
                finally:
                    probe.close()
        self.attach(port)

    def _on_readable(self, port: Port) -> None:
        packets = port.netdev.recv_batch(BATCH)
        if packets:  # a wake-up with nothing ready is normal with rings, not an error
            self.receive(port, packets)

    def _on_backlog(self, port: Port) -> None:
        if self._fds.get(port) is None:
            return  # detached before a call_soon from attach() ran
        packets = port.netdev.recv_backlog(BATCH)
        if packets:
            self.receive(port, packets)

    def receive(self, port: Port, packets: list) -> None:
        """A batch received on `port`: cached flows first, then the slow path."""
        if self.taps:  # a capture sees every port a frame crosses: no shortcuts
            self.input(port, packets, 0)
            return
        now = self.clock()
        flows = self.flows
        groups, misses = flows.match(port, packets, now)
        if groups:
            self._apply(port, groups, now)
        if misses:
            self.input(port, misses, 0, now)
            flows.learn(port, misses, now)

    def _apply(self, port: Port, groups: dict, now: float) -> None:
        """Send frames of valid flows, with the slow path's side effects."""
        # Frames of several flows to one port go out in one batch (one kick).
        outputs: dict[Port, list] | None = {} if len(groups) > 1 else None
        n_in = bytes_in = 0
        for flow, packets in groups.items():
            n = len(packets)
            nbytes = sum(map(len, packets)) - n * VNET_HDR_LEN
            n_in += n
            bytes_in += nbytes
            flow.packets += n
            flow.bytes += nbytes
            flow.used = now
            for src in flow.srcs:
                src.used = now
            for out, peer in flow.hops:
                out.stats.tx_packets += n
                out.stats.tx_bytes += nbytes
                peer.stats.rx_packets += n
                peer.stats.rx_bytes += nbytes
            if outputs is None:
                continue
            batch = outputs.get(flow.out)
            if batch is None:
                outputs[flow.out] = packets
            else:
                batch.extend(packets)
        stats = port.stats
        stats.rx_packets += n_in
        stats.rx_bytes += bytes_in
        if outputs is None:
            self.output(flow.out, packets, 0)  # the one flow
            return
        for out, packets in outputs.items():
            self.output(out, packets, 0)

    def input(self, port: Port, packets: list, depth: int, now: float | None = None) -> None:
        """Account for a batch received on `port` and forward it (the slow path)."""
        stats = port.stats
        n = len(packets)
        stats.rx_packets += n
        stats.rx_bytes += sum(map(len, packets)) - n * VNET_HDR_LEN
        taps = self.taps.get(port)
        if taps:
            for tap in taps:
                tap("in", packets)
        if depth >= MAX_DEPTH:
            stats.drop("loop", n)
            return
        bridge = port.bridge
        now = self.clock() if now is None else now
        if bridge.mirrors is None:
            outputs = bridge.forward(port, packets, now)
            for out, batch in outputs.items():
                self.output(out, batch, depth)
            return
        outputs, copies = mirror.forward(bridge, port, packets, now)
        for out, batch in outputs.items():
            self.output(out, batch, depth)
        for (m, out), batch in copies.items():  # after the frames themselves: never before
            sent = self.output(out, batch, depth)
            m.packets += sent
            m.bytes += sum(map(len, batch[:sent])) - sent * VNET_HDR_LEN
            m.dropped += len(batch) - sent

    def output(self, port: Port, packets: list, depth: int) -> int:
        """Send `packets` on `port` without waiting; how many left (the rest are counted)."""
        max_len = port.max_len
        if max_len is not None:  # set-port mtu=N; a GSO frame (gso_type != 0) is exempt
            fits = [p for p in packets if len(p) <= max_len or p[1]]
            if len(fits) != len(packets):
                port.stats.drop(port.oversize_reason, len(packets) - len(fits), tx=True)
                packets = fits
                if not packets:
                    return 0
        taps = self.taps.get(port)
        if taps:
            for tap in taps:
                tap("out", packets)
        netdev = port.netdev
        deliver = netdev.deliver_batch
        if deliver is not None:
            sent = deliver(packets, depth + 1)
        else:
            sent = netdev.send_batch(packets)
        stats = port.stats
        n = len(packets)
        if sent == n:
            stats.tx_packets += n
            stats.tx_bytes += sum(map(len, packets)) - n * VNET_HDR_LEN
        else:
            stats.tx_packets += sent
            stats.tx_bytes += sum(map(len, packets[:sent])) - sent * VNET_HDR_LEN
            stats.drop("tx-failed", n - sent, tx=True)
        return sent

    def close(self) -> None:
        self.flows.clear()
        for port in list(self._fds):
            self.detach(port)

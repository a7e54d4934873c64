"""Capture: the bounded tap, the pcap output, and the CAPTURE stream over a real socket."""

from __future__ import annotations

import io
import threading

import pytest
from helpers import TYPE, Daemon
from scapy.all import Ether, PcapReader

from ovslite import pcap
from ovslite.capture import Capture
from ovslite.control.messages import Cmd
from ovslite.vnet import ethernet

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def frame(src=A, dst=B, n=0) -> bytes:
    return bytes(Ether(src=src, dst=dst, type=0x0800)) + n.to_bytes(4, "big") + bytes(42)


# -- the tap ------------------------------------------------------------------------


def test_capture_takes_wanted_direction_only():
    cap = Capture("p1", direction="in", clock=lambda: 5.0)
    cap("out", [ethernet(frame(n=1))])
    cap("in", [ethernet(frame(n=2))])
    (ts, direction, length, data) = cap.take()[0]
    assert (ts, direction, length, data) == (5.0, "in", 60, frame(n=2))
    assert cap.take() == []


def test_capture_stops_at_count():
    cap = Capture("p1", count=2)
    cap("in", [ethernet(frame(n=i)) for i in range(5)])
    assert [d[3] for d in cap.take()] == [frame(n=0), frame(n=1)]
    assert cap.done and cap.captured == 2 and cap.dropped == 0


def test_full_capture_drops_and_counts_without_blocking():
    cap = Capture("p1", limit=3)
    cap("in", [ethernet(frame(n=i)) for i in range(10)])
    assert len(cap.take(100)) == 3
    assert (cap.captured, cap.dropped) == (3, 7)


def test_capture_copies_frames_and_truncates_to_snaplen():
    buf = bytearray(ethernet(frame()))
    cap = Capture("p1", snaplen=20)
    cap("in", [buf])
    buf[10:16] = bytes(6)
    (_, _, length, data) = cap.take()[0]
    assert length == 60 and data == frame()[:20]


# -- pcap ---------------------------------------------------------------------------


def test_pcap_stream_is_readable_by_a_pcap_reader():
    frames = [frame(n=i) for i in range(3)]
    blob = pcap.global_header() + b"".join(pcap.record(100.25 + i, len(f), f) for i, f in enumerate(frames))
    read = list(PcapReader(io.BytesIO(blob)))
    assert [bytes(p) for p in read] == frames
    assert [float(p.time) for p in read] == [100.25, 101.25, 102.25]
    assert [r[2] for r in pcap.iter_records(blob[24:])] == frames


def test_summary_line():
    line = pcap.summary(0.0, "pa", "in", 60, frame())
    assert f"pa in  {A} > {B}" in line and "length 60" in line and "\n" not in line


# -- the stream ---------------------------------------------------------------------


@pytest.fixture
def daemon(daemon):
    """conftest.py's daemon, with bridge br0 and ports p1 and p2."""
    with daemon.client() as c:
        c.add_bridge("br0")
        c.add_port("br0", "p1", TYPE)
        c.add_port("br0", "p2", TYPE)
    return daemon


def inject(d: Daemon, port: str, frames: list[bytes]) -> None:
    def run():
        p = d.switch.ports[port]
        d.datapath.input(p, [ethernet(f) for f in frames], 0)

    d.lt.call(run)


def stream_in_thread(d: Daemon, values: dict) -> tuple[threading.Thread, list]:
    out: list = []
    client = d.client(timeout=10).connect()

    def run():
        with client:
            out.extend(client.stream(Cmd.CAPTURE, values))

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for_tap(d: Daemon, port: str) -> None:
    for _ in range(200):
        if d.lt.call(lambda: bool(d.datapath.taps.get(d.switch.ports[port]))):
            return
        threading.Event().wait(0.01)
    raise AssertionError("capture never attached")


def test_capture_stream_delivers_both_directions_then_done(daemon):
    t, msgs = stream_in_thread(daemon, {"port": "p1", "direction": "both", "count": 2})
    wait_for_tap(daemon, "p1")
    inject(daemon, "p1", [frame(A, B, 1)])  # p1 receives A->B (flooded to p2)
    inject(daemon, "p2", [frame(B, A, 2)])  # p2 receives B->A: known, out through p1
    t.join(10)
    assert not t.is_alive()
    frames = [(d, r[2]) for m in msgs if "pcap" in m for d, r in zip(m["directions"], pcap.iter_records(m["pcap"]), strict=True)]
    assert frames == [("i", frame(A, B, 1)), ("o", frame(B, A, 2))]
    assert msgs[-1]["count"] == 2 and msgs[-1]["dropped"] == 0
    assert not daemon.lt.call(lambda: daemon.datapath.taps)  # detached at the end


def test_slow_reader_loses_capture_frames_not_traffic(daemon):
    client = daemon.client(timeout=10).connect()
    gen = client.stream(Cmd.CAPTURE, {"port": "p1", "direction": "in"})
    # Start the request without reading: a generator runs up to its first receive.
    thread = threading.Thread(target=lambda: next(gen, None))
    thread.start()
    wait_for_tap(daemon, "p1")
    for burst in range(20):
        inject(daemon, "p1", [frame(A, B, burst * 1000 + i) for i in range(1000)])
    stats = daemon.lt.call(lambda: daemon.switch.ports["p2"].stats.tx_packets)
    assert stats == 20_000  # forwarding never waited for the capture
    cap = daemon.lt.call(lambda: daemon.datapath.taps[daemon.switch.ports["p1"]][0])
    assert cap.dropped > 0
    thread.join(10)
    client.close()  # Ctrl-C: the daemon detaches the capture
    for _ in range(200):
        if not daemon.lt.call(lambda: daemon.datapath.taps):
            break
        threading.Event().wait(0.01)
    assert not daemon.lt.call(lambda: daemon.datapath.taps)


def test_capture_of_unknown_port_is_an_error(daemon):
    from ovslite_ctl.client import DaemonError

    with daemon.client() as c, pytest.raises(DaemonError, match="no port named nope"):
        list(c.stream(Cmd.CAPTURE, {"port": "nope"}))

"""A system port across restarts and crashes: the spill socket, the fanout
group's rollover and the ring a crashed process leaves behind.

The kernel side runs for real where root allows: a veth pair, frames sent
into one end and read through the netdev on the other, with the "fd store"
played by dup()ed fds that outlive the first netdev.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest

from ovslite.netdev import netdev_class, pktring, system
from ovslite.netdev.pktring import FRAME_SIZE, HDR, RX_FRAMES, TP_STATUS_USER
from ovslite.netdev.system import RING, SPILL, fanout_group
from ovslite.vnet import VNET_HDR_LEN

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (AF_PACKET, a veth pair)")
#: the payload's first bytes: a marker, then a 4-byte sequence number
MARK = b"ovsl"
DST = bytes.fromhex("020000000099")


# -- ordering the slots of an abandoned ring (pure) ----------------------------------

def fake_ring(slots: dict[int, tuple[int, int, bytes]], frame_size: int = FRAME_SIZE) -> bytearray:
    """An RX ring whose slot i holds {i: (sec, nsec, frame)} for the user."""
    ring = bytearray(RX_FRAMES * frame_size + 4096)
    mac = 64
    for i, (sec, nsec, frame) in slots.items():
        HDR.pack_into(ring, i * frame_size, TP_STATUS_USER, len(frame), len(frame), mac, mac,
                      sec, nsec, 0, 0)
        start = i * frame_size + mac
        ring[start - VNET_HDR_LEN:start + len(frame)] = bytes(VNET_HDR_LEN) + frame
    return ring


def seqs(packets) -> list[int]:
    return [int.from_bytes(bytes(p[VNET_HDR_LEN + 14 + 4:VNET_HDR_LEN + 14 + 8]), "big")
            for p in packets]


def frame(seq: int) -> bytes:
    return DST + bytes.fromhex("020000000001") + b"\x88\xb5" + MARK + seq.to_bytes(4, "big") + bytes(38)


@pytest.mark.parametrize("frame_size", sorted({g[1] for g in pktring.GEOMETRIES}))
def test_abandoned_ring_is_read_oldest_first_when_full(frame_size):
    # Full: the oldest frame sits where the kernel's head is, slot 100 here.
    # Also with the slot size of an older version's ring.
    slots = {i: (1000 + (i - 100) % RX_FRAMES // 10, (i - 100) % RX_FRAMES % 10, frame((i - 100) % RX_FRAMES))
             for i in range(RX_FRAMES)}
    ring = fake_ring(slots, frame_size)
    out: list = []
    pktring.read_abandoned(ring, lambda: None, out, RX_FRAMES, frame_size)
    assert seqs(out) == list(range(RX_FRAMES))
    assert all(ring[i * frame_size] == 0 for i in range(RX_FRAMES)), "slots not given back"


def test_abandoned_ring_partly_filled_wraps():
    # The dead reader stopped at slot RX_FRAMES - 3; five frames wait, across the wrap.
    start = RX_FRAMES - 3
    slots = {(start + k) % RX_FRAMES: (7, k, frame(k)) for k in range(5)}
    out: list = []
    pktring.read_abandoned(fake_ring(slots), lambda: None, out)
    assert seqs(out) == [0, 1, 2, 3, 4]


def test_ring_member_index_names_our_ring_with_or_without_an_abandoned_one():
    # members: [spill, ring] or, while an abandoned ring is still in the
    # group, [spill, abandoned, ring]; the kernel takes the answer modulo.
    assert SPILL == 0
    assert RING % 2 == 1 and RING % 3 == 2


# -- the kernel side ---------------------------------------------------------------

@pytest.fixture
def veth():
    """(name, peer): a veth pair, both ends up, no addresses; removed afterwards."""
    name = f"ovls{uuid.uuid4().hex[:8]}"
    peer = name + "p"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
                   check=True, timeout=10)
    try:
        for end in (name, peer):  # no IPv6 chatter (DAD, MLD) in the tests' queues
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1"],
                           check=False, timeout=10)
        subprocess.run(["ip", "link", "set", peer, "up"], check=True, timeout=10)
        yield name, peer
    finally:
        subprocess.run(["ip", "link", "del", name], check=False, timeout=10)


class Sender:
    def __init__(self, dev: str):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind((dev, 0))

    def send(self, seqs) -> None:
        for seq in seqs:
            self.sock.send(frame(seq))

    def close(self) -> None:
        self.sock.close()


def ours(packets) -> list[int]:
    return seqs(p for p in packets if bytes(p[VNET_HDR_LEN + 14:VNET_HDR_LEN + 18]) == MARK)


def read_all(netdev, until: float = 1.0) -> list:
    """Everything the netdev has, the way the datapath reads it: backlog and ring."""
    got: list = []
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        batch = netdev.recv_backlog(64) + netdev.recv_batch(64)
        got += batch
        if not batch:
            time.sleep(0.02)
    return got


def open_system(dev: str, inherited=None):
    netdev = netdev_class("system")(dev, {})
    netdev.open(inherited)
    return netdev


@needs_root
def test_fds_for_the_store_and_for_a_planned_hand_over(veth):
    dev, _ = veth
    first = open_system(dev)
    try:
        spill, ring = first.handover_fds()
        assert spill == first.spill.fileno() and ring == first.sock.fileno()
        group = fanout_group(first.spill)
        assert group & 0xFFFF0000 and fanout_group(first.sock) == group
        assert first.tx_sock is first.spill  # one packet socket fewer
        first.prepare_handover()
        assert first.handover_fds() == [spill]  # the ring is read to the end before exit
        kept = os.dup(spill)
    finally:
        first.close()
    second = open_system(dev, [kept])
    try:
        assert second.spill.fileno() == kept
        assert fanout_group(second.sock) == group, "the new ring did not join the group"
        assert not second._spilling  # nothing queued: straight back to the ring
        assert second.fileno() == second.sock.fileno()
        assert second.backlog_fileno() == kept
    finally:
        second.close()


@needs_root
def test_planned_hand_over_loses_nothing(veth):
    dev, peer = veth
    tx = Sender(peer)
    first = open_system(dev)
    try:
        tx.send(range(0, 100))
        time.sleep(0.1)
        first.prepare_handover()
        tx.send(range(100, 300))  # while "no daemon runs"
        got = ours(read_all(first, 0.3))  # what the ring held: the old process forwards it
        kept = os.dup(first.handover_fds()[0])
    finally:
        first.close()
    second = open_system(dev, [kept])
    try:
        assert second._spilling, "a backlog, but the ring took the frames back at once"
        got += ours(read_all(second, 0.3))
        tx.send(range(300, 350))  # back on the ring
        got += ours(read_all(second, 0.3))
        assert not second._spilling
        assert got == list(range(350))
    finally:
        second.close()
        tx.close()


@needs_root
def test_crash_keeps_the_ring_and_rolls_over_to_the_spill_socket(veth):
    """The first instance dies without a word; the fd store (our dups) keeps
    both sockets. 600 frames: the dead ring takes what it can, the rest rolls
    over; the next instance gets all of them, in order."""
    dev, peer = veth
    tx = Sender(peer)
    first = open_system(dev)
    store = [os.dup(fd) for fd in first.handover_fds()]
    try:
        tx.send(range(0, 10))
        assert ours(read_all(first, 0.2)) == list(range(10))
    finally:
        first.close()  # the crash: only the store's copies live on
    try:
        tx.send(range(10, 610))
        time.sleep(0.1)
        second = open_system(dev, store)
    except BaseException:
        for fd in store:
            os.close(fd)
        raise
    try:
        abandoned = len(second._abandoned)
        assert RX_FRAMES // 2 <= abandoned <= RX_FRAMES, abandoned
        got = ours(read_all(second, 0.5))
        tx.send(range(610, 650))
        got += ours(read_all(second, 0.3))
        assert got == list(range(10, 650)), f"{len(got)} frames, abandoned ring had {abandoned}"
        assert not second._spilling
    finally:
        second.close()
        tx.close()


@needs_root
def test_ring_overflow_rolls_over_and_is_read_while_running(veth):
    dev, peer = veth
    tx = Sender(peer)
    netdev = open_system(dev)
    try:
        tx.send(range(1000))  # nobody reads meanwhile: the ring fills
        time.sleep(0.1)
        assert system.queue_length(netdev.spill) > 0, "nothing rolled over to the spill socket"
        got = sorted(ours(read_all(netdev, 0.5)))
        assert got == list(range(1000))
    finally:
        netdev.close()
        tx.close()


@needs_root
def test_frames_that_rolled_over_long_ago_are_dropped_not_forwarded(veth):
    """After a flood (the ring never empty, so the spill socket never read),
    what waited in the spill socket longer than STALE_AFTER is old news."""
    dev, peer = veth
    tx = Sender(peer)
    netdev = open_system(dev)
    try:
        tx.send(range(1000))
        time.sleep(system.STALE_AFTER + 0.1)
        got = ours(read_all(netdev, 0.3))
        assert got == list(range(len(got))), "the ring's frames, in order"
        assert RX_FRAMES // 2 <= len(got) <= RX_FRAMES
        assert netdev.rx_stale == 1000 - len(got)
        assert netdev.drops()["stale"] == 1000 - len(got)
    finally:
        netdev.close()
        tx.close()


@needs_root
def test_backlog_state_machine_without_frames(veth, monkeypatch):
    dev, _ = veth
    first = open_system(dev)
    kept = os.dup(first.spill.fileno())
    first.close()
    with monkeypatch.context() as m:
        m.setattr(system, "queue_length", lambda sock: 1)  # claims a backlog
        second = open_system(dev, [kept])
    try:
        assert second._spilling and "handover" in second.info()
        assert ours(second.recv_backlog(64)) == []  # empty after all: back to the ring
        assert not second._spilling and "handover" not in second.info()
    finally:
        second.close()


@needs_root
def test_sockets_of_other_devices_are_closed(veth):
    dev, _ = veth
    other = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    other.bind(("lo", 0))
    r, w = os.pipe()
    os.close(w)
    pipe = os.fstat(r).st_ino
    netdev = netdev_class("system")(dev, {})
    try:
        netdev.open([other.detach(), r])
        assert not _is(r, pipe)
        assert netdev.spill is not None and not netdev._spilling  # a fresh spill socket
    finally:
        netdev.close()


def _is(fd: int, inode: int) -> bool:
    try:
        return os.fstat(fd).st_ino == inode
    except OSError:
        return False


def test_a_frame_cut_to_its_slot_without_a_copy_is_dropped():
    # The kernel cuts a frame too big for its slot and queues a whole copy
    # (TP_STATUS_COPY) only while the socket's buffer has room; a cut frame
    # with no copy must not be forwarded (its vnet header describes the whole).
    ring = fake_ring({0: (1, 0, frame(0)), 1: (1, 1, frame(1)), 2: (1, 2, frame(2))})
    HDR.pack_into(ring, 1 * FRAME_SIZE, TP_STATUS_USER, 1514, len(frame(1)), 64, 64, 1, 1, 0, 0)
    out: list = []
    nxt, cut = pktring.read_ring(ring, 0, 64, lambda: None, out)
    assert (nxt, cut) == (3, 1)
    assert seqs(out) == [0, 2]

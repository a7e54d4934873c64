"""tundev.RestartQueue: a TAP's queue long across a restart, then short again.

The queue length and the clock are stand-ins (the kernel side is tested in
integration/test_handover.py); reads come from a pipe.
"""

from __future__ import annotations

import os

import pytest

from ovslite.netdev import tundev
from ovslite.netdev.tundev import DEFAULT_TXQLEN, HANDOVER_TXQLEN, QUEUE_GRACE, RestartQueue, TapIO


class FakeTap(RestartQueue, TapIO):
    def __init__(self, length: int, owned: bool = True):
        self.fd, self.w = os.pipe()
        os.set_blocking(self.fd, False)
        self.length, self.owned, self.name = length, owned, "t1"

    def owns_queue(self) -> bool:
        return self.owned

    def queue_length(self, value=None):
        if value is not None:
            self.length = value
        return self.length


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tundev.time, "monotonic", lambda: now[0])
    return now


def test_prepare_makes_an_owned_queue_long():
    tap = FakeTap(DEFAULT_TXQLEN)
    tap.prepare_handover()
    assert tap.length == HANDOVER_TXQLEN
    other = FakeTap(500, owned=False)  # a TAP someone else made keeps its settings
    other.prepare_handover()
    assert other.length == 500


def test_the_queue_stays_long_through_the_grace_then_shrinks_once_read(clock):
    tap = FakeTap(HANDOVER_TXQLEN)
    tap.resume_queue()
    os.write(tap.w, b"x")
    assert tap.recv_batch(4) == [b"x"]  # the backlog read, but too early
    assert tap.length == HANDOVER_TXQLEN
    clock[0] += QUEUE_GRACE
    os.write(tap.w, b"y")
    assert tap.recv_batch(1) == [b"y"]  # a full batch: maybe more waiting
    assert tap.length == HANDOVER_TXQLEN
    assert tap.recv_batch(1) == []
    assert tap.length == DEFAULT_TXQLEN
    assert "recv_batch" not in tap.__dict__  # back to the plain read


def test_a_queue_not_lengthened_is_left_alone(clock):
    tap = FakeTap(DEFAULT_TXQLEN)
    tap.resume_queue()
    assert "recv_batch" not in tap.__dict__

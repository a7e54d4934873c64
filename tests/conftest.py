"""Fixtures the unit tests share; what they are built from is in helpers.py."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import Daemon, FakeInternal, LoopThread, short_dir

from ovslite import netdev as netdevmod


@pytest.fixture
def lt():
    t = LoopThread()
    yield t
    t.stop()


@pytest.fixture
def sockdir():
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake_internal(monkeypatch):
    """A bridge's local port is a FakeInternal: no TAP device, no root."""
    monkeypatch.setitem(netdevmod._CLASSES, "internal", FakeInternal)


@pytest.fixture
def daemon(lt, sockdir, tmp_path, fake_internal):
    """An in-process daemon (helpers.Daemon), its socket in a directory it creates."""
    d = Daemon(lt, str(tmp_path / "conf.db"), os.path.join(sockdir, "run", "ctl.sock")).start()
    yield d
    d.stop()

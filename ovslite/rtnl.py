"""Synchronous rtnetlink calls from inside the event loop, in any namespace.

pyroute2 (0.9) runs its sync IPRoute on a private asyncio loop, which cannot
start in a thread whose loop is already running. Configuration changes are
rare and short, so netdev providers make them synchronously, as OVS does:
`call(fn)` runs `fn(ipr)` on one dedicated thread and waits for the result.

For another network namespace (a container's), that thread enters it with
setns(2), which changes only the calling thread, builds an IPRoute there (a
netlink socket stays bound to the namespace it was created in), and returns
to the daemon's namespace. Errors propagate to the caller unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TIMEOUT = 10.0
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovslite-rtnl")
_local = threading.local()
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str | None = None, pid: int | None = None) -> str:
    """The file naming a namespace given by `ip netns` name or by a process id."""
    if pid is not None:
        return f"/proc/{int(pid)}/ns/net"
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(path: str):
    """Run the body with this thread inside the namespace at `path`."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        os.close(home)
        raise FileNotFoundError(2, f"network namespace {path} does not exist") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _ipr(netns: str | None):
    # Not `from pyroute2 import IPRoute`: that would load all of pyroute2 (pyroute2_lazy).
    from pyroute2.iproute.linux import IPRoute

    cache = getattr(_local, "ipr", None)
    if cache is None:
        cache = _local.ipr = {}
    if netns is None:
        ipr = cache.get(None)
        if ipr is None:
            ipr = cache[None] = IPRoute()
        return ipr
    with entered(netns):  # a namespace may be recreated under the same name: no cache
        return IPRoute()


def _run(fn, netns):
    ipr = _ipr(netns)
    try:
        return fn(ipr)
    finally:
        if netns is not None:
            ipr.close()


def call(fn: Callable[[Any], Any], netns: str | None = None) -> Any:
    """Run fn(IPRoute) in the rtnl thread, inside namespace path `netns` if given."""
    return _executor.submit(_run, fn, netns).result(TIMEOUT)


def run_in(netns: str, fn: Callable[[], Any]) -> Any:
    """Run fn() in the rtnl thread inside namespace path `netns` (e.g. to open a TAP)."""

    def task():
        with entered(netns):
            return fn()

    return _executor.submit(task).result(TIMEOUT)

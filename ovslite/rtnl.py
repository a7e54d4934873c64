"""Synchronous rtnetlink calls from inside the event loop.

pyroute2 (0.9) runs its sync IPRoute on a private asyncio loop, which cannot
start in a thread whose loop is already running. Configuration changes are
rare and short, so netdev providers make them synchronously, as OVS does:
`call(fn)` runs `fn(ipr)` on one dedicated thread that keeps its own IPRoute
sockets (one per network namespace asked for) and waits for the result.
Errors propagate to the caller unchanged.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

TIMEOUT = 10.0

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovslite-rtnl")
_local = threading.local()


def _ipr(netns: str | None):
    from pyroute2 import IPRoute

    cache = getattr(_local, "ipr", None)
    if cache is None:
        cache = _local.ipr = {}
    ipr = cache.get(netns)
    if ipr is None:
        ipr = cache[netns] = IPRoute(netns=netns) if netns else IPRoute()
    return ipr


def _run(fn, netns):
    return fn(_ipr(netns))


def call(fn: Callable[[Any], Any], netns: str | None = None) -> Any:
    """Run fn(IPRoute) in the rtnl thread (in `netns` if given) and return its result."""
    return _executor.submit(_run, fn, netns).result(TIMEOUT)


def forget(netns: str) -> None:
    """Close the cached socket for a namespace that is going away."""

    def close(_):
        ipr = _local.ipr.pop(netns, None) if hasattr(_local, "ipr") else None
        if ipr is not None:
            ipr.close()

    _executor.submit(close, None).result(TIMEOUT)

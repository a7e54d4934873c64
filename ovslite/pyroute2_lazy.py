"""pyroute2's submodules without its package __init__ (issue #5: memory).

`import pyroute2.netlink` first runs pyroute2/__init__.py, which imports every
API pyroute2 has (IPDB, NDB, conntrack, nftables, wireguard, plan9...): about
6 MB of RSS and 0.1 s of start-up for a daemon (and a CLI) that needs only the
netlink message classes, the rtnetlink marshal and IPRoute.

`install()` (run by ovslite/__init__.py, before any ovslite module imports
pyroute2) registers the package as a bare module with the package's __path__,
so `import pyroute2.x.y` loads x and y alone. Nothing that wants the whole
package breaks: a name the package __init__ defines (`from pyroute2 import
IPRoute`) runs that __init__ on first use, in the same module object, and
`from pyroute2 import <submodule>` imports just that submodule. If pyroute2
was imported before ovslite, it is left as it is.

`bound_caches()` (run by ovslite.control.messages) caps pyroute2.netlink's
module-level memo dicts (issue #12). `cache_hdr` keeps a decoded header per
distinct 4-byte attribute header (length, type) it ever saw, for the life of
the process: every new string length in a request added one, so varied valid
requests grew the daemon without bound (2^32 possible keys). A BoundedCache
forgets everything when full: the memo still saves the unpack for the few
hundred headers a busy daemon repeats, and holds at most CACHE_LIMIT entries.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: dunder names the package __init__ defines; other dunders are not looked up there
PACKAGE_DUNDERS = ("__all__", "__version__")
#: entries each of pyroute2.netlink's memo dicts may hold (~0.3 KB each)
CACHE_LIMIT = 2048
#: pyroute2.netlink's module-level memos: keyed by what it decodes, never emptied
CACHES = ("cache_hdr", "cache_fmt", "cache_jit")


class BoundedCache(dict):
    """A memo dict that empties itself instead of growing past `limit` entries.

    pyroute2 fills it with `cache.__setitem__(key, v)` and reads it back with
    `cache[key]` in one expression, so the entry being set always survives.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int, initial: dict | None = None):
        super().__init__()
        self.limit = limit
        for key, value in (initial or {}).items():
            self[key] = value

    def __setitem__(self, key, value) -> None:
        if len(self) >= self.limit and key not in self:
            self.clear()
        super().__setitem__(key, value)


def install(name: str = "pyroute2") -> types.ModuleType | None:
    if name in sys.modules:
        return None
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        return None  # not installed (or not a package): let the real import say so
    mod = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str):
        if attr.startswith("__") and attr not in PACKAGE_DUNDERS:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        del mod.__getattr__  # from now on, a plain module
        spec.loader.exec_module(mod)
        return getattr(mod, attr)

    mod.__getattr__ = __getattr__
    sys.modules[name] = mod
    return mod


def bound_caches(limit: int = CACHE_LIMIT, name: str = "pyroute2") -> None:
    """Replace pyroute2.netlink's memo dicts with BoundedCaches (idempotent)."""
    netlink = importlib.import_module(f"{name}.netlink")
    for attr in CACHES:
        cache = getattr(netlink, attr, None)
        if isinstance(cache, dict) and not isinstance(cache, BoundedCache):
            setattr(netlink, attr, BoundedCache(limit, cache))

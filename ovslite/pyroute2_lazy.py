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
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: dunder names the package __init__ defines; other dunders are not looked up there
PACKAGE_DUNDERS = ("__all__", "__version__")


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

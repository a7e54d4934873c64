"""Validation of user-supplied names, shared by the daemon, its database and the CLI.

One checker per kind of name, so every door (commands, options that name an
interface, the database at load, ovslite-ctl before sending) refuses the same
things with the same one-line message.
"""

IFNAMSIZ = 16  # including the terminating NUL, as in <linux/if.h>
#: besides whitespace and unprintables: '/' and ':' the kernel refuses
#: (dev_valid_name), '%' it would rewrite ("tap%d" becomes "tap0", dev_alloc_name)
FORBIDDEN = "/:%"


def check_ifname(name: str, what: str = "interface") -> str:
    """Return `name` if the kernel would take it as a device name unchanged; else ValueError.

    Bridges get an internal port of the same name, so bridge names obey this too.
    """
    if not isinstance(name, str):
        raise ValueError(f"invalid {what} name {name!r}: not a string")
    if not name:
        raise ValueError(f"invalid {what} name: empty")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"invalid {what} name {name!r}: longer than {IFNAMSIZ - 1} bytes")
    if name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}")
    bad = sorted({c for c in name if c in FORBIDDEN or c.isspace() or not c.isprintable()})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(f"invalid {what} name {name!r}: contains {shown}")
    return name


def check_netns(name: str) -> str:
    """An `ip netns` name: a file name under /run/netns (so no '/', '.' or '..')."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid network namespace name {name!r}")
    if "/" in name or name in (".", "..") or "\0" in name or len(name.encode()) > 255:
        raise ValueError(f"invalid network namespace name {name!r}")
    return name

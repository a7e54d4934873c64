"""Validation of user-supplied names, shared by the daemon and the CLI."""

IFNAMSIZ = 16  # including the terminating NUL, as in <linux/if.h>


def check_ifname(name: str, what: str = "interface") -> str:
    """Return `name` if the kernel would accept it as a device name; else ValueError.

    Bridges get an internal port of the same name, so bridge names obey this too.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid {what} name: empty")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"invalid {what} name {name!r}: longer than {IFNAMSIZ - 1} bytes")
    if name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}")
    bad = sorted({c for c in name if c in "/:" or c.isspace() or not c.isprintable()})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(f"invalid {what} name {name!r}: contains {shown}")
    return name

"""The systemd service protocols, spoken directly (no libsystemd, no python-systemd).

sd_notify(3): state changes are datagrams of newline-separated KEY=VALUE
lines sent to the AF_UNIX SOCK_DGRAM socket named by $NOTIFY_SOCKET (a path,
or '@name' for the abstract namespace). systemd checks the sender's
credentials, which the kernel attaches itself. File descriptors for the
service manager's fd store travel with the datagram as SCM_RIGHTS.

sd_listen_fds(3): fds handed to the service (socket activation, or the fd
store given back after a restart) start at 3; $LISTEN_FDS says how many,
$LISTEN_FDNAMES their colon-separated names and $LISTEN_PID which process they
are for.

Everything here is a no-op when $NOTIFY_SOCKET is unset (not run by systemd),
so the daemon calls it unconditionally. A failed send is logged and reported
by a False return, never raised: losing a STATUS update must not stop the switch.

    ready("2 bridges, 5 ports")   # READY=1 + STATUS=
    status("reloading")           # STATUS=
    watchdog()                    # WATCHDOG=1, every watchdog_interval() seconds
    stopping()                    # STOPPING=1
    store_fds("port-veth0", [fd]) # FDSTORE=1 + FDNAME= + SCM_RIGHTS
    listen_fds()                  # {"port-veth0": [3], ...} after a restart
"""

from __future__ import annotations

import array
import os
import socket
import time

import structlog

log = structlog.get_logger("ovslite.sdnotify")

#: first fd passed by the service manager (SD_LISTEN_FDS_START)
LISTEN_FDS_START = 3
#: the kernel's limit of fds in one SCM_RIGHTS message (SCM_MAX_FD)
SCM_MAX_FD = 253
#: longest FDNAME systemd accepts (FDNAME_MAX)
FDNAME_MAX = 255


def _address(env=None) -> str | None:
    """The socket address from $NOTIFY_SOCKET, or None if unset or unsupported."""
    env = os.environ if env is None else env
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr[0] == "@":
        return "\0" + addr[1:]  # abstract namespace
    if addr[0] == "/":
        return addr
    # "vsock:CID:PORT" (systemd 253+, for VMs) is not supported: act as if unset.
    log.warning("unsupported NOTIFY_SOCKET address", address=addr)
    return None


def enabled() -> bool:
    """Whether a service manager listens for notifications."""
    return _address() is not None


def _format(fields: dict) -> bytes:
    lines = []
    for key, value in fields.items():
        key = key.upper()
        if not key or "=" in key or "\n" in key:
            raise ValueError(f"invalid notification field name {key!r}")
        if isinstance(value, bool):
            value = int(value)
        # One field per line: a newline inside a value would start a bogus field.
        text = str(value).replace("\n", " ")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode()


def send(message: bytes, fds: list[int] | tuple[int, ...] = ()) -> bool:
    """Send one raw notification datagram (with `fds` as SCM_RIGHTS).

    True if sent; False if $NOTIFY_SOCKET is unset or the send failed (logged).
    """
    addr = _address()
    if addr is None:
        return False
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendmsg([message], ancillary, 0, addr)
    except OSError as exc:
        log.warning("sd_notify failed", error=exc.strerror or str(exc), message=message[:80])
        return False
    return True


def notify(fds: list[int] | tuple[int, ...] = (), **fields) -> bool:
    """Send `fields` as KEY=VALUE lines (names upper-cased), e.g. notify(READY=1)."""
    if not fields:
        raise ValueError("notify() needs at least one field")
    return send(_format(fields), fds)


def ready(status: str | None = None) -> bool:
    """Start-up is complete (Type=notify units become active only now)."""
    if status is None:
        return notify(READY=1)
    return notify(READY=1, STATUS=status)


def status(text: str) -> bool:
    """A one-line status shown by `systemctl status` (StatusText property)."""
    return notify(STATUS=text)


def reloading(status: str | None = None) -> bool:
    """A configuration reload has started; call ready() when it is done."""
    fields: dict = {"RELOADING": 1, "MONOTONIC_USEC": time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}
    if status is not None:
        fields["STATUS"] = status
    return notify(**fields)


def stopping(status: str | None = None) -> bool:
    """Shutdown has started."""
    if status is None:
        return notify(STOPPING=1)
    return notify(STOPPING=1, STATUS=status)


def watchdog() -> bool:
    """Keep-alive: must come at least every WATCHDOG_USEC or the service is killed."""
    return notify(WATCHDOG=1)


def watchdog_interval(env=None) -> float | None:
    """Seconds between watchdog() calls (half the WatchdogSec= period), or None.

    None when the watchdog is off, or $WATCHDOG_PID names another process
    (the variables were inherited, not meant for us).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    try:
        usec_value = int(usec)
    except ValueError:
        return None
    if usec_value <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec_value / 2_000_000


def _check_fdname(name: str) -> None:
    if not name or len(name) > FDNAME_MAX or ":" in name or not all(
        0x20 < ord(c) < 0x7F for c in name
    ):
        raise ValueError(
            f"invalid fd name {name!r}: 1-{FDNAME_MAX} printable ASCII characters, no ':' or space"
        )


def store_fds(name: str, fds: list[int] | tuple[int, ...]) -> bool:
    """Hand `fds` to the service manager's fd store under `name` (FDSTORE=1).

    They come back through listen_fds() when the service is restarted
    (FileDescriptorStoreMax= must be set). systemd keeps its own duplicates,
    so the caller still owns and may close `fds`. More than SCM_MAX_FD fds are
    sent in several datagrams. True if every datagram was sent.
    """
    _check_fdname(name)
    fds = list(fds)
    if not fds:
        raise ValueError("store_fds() needs at least one fd")
    ok = True
    for start in range(0, len(fds), SCM_MAX_FD):
        ok = notify(fds[start:start + SCM_MAX_FD], FDSTORE=1, FDNAME=name) and ok
    return ok


def remove_fds(name: str) -> bool:
    """Drop every fd stored under `name` from the service manager's fd store."""
    _check_fdname(name)
    return notify(FDSTOREREMOVE=1, FDNAME=name)


def listen_fds(unset_environment: bool = True, env=None) -> dict[str, list[int]]:
    """The fds passed by the service manager, by name: {name: [fd, ...]}.

    Reads $LISTEN_PID (must be this process), $LISTEN_FDS and
    $LISTEN_FDNAMES; fds without a name are listed under "unknown", as
    sd_listen_fds_with_names(3) does. Each fd is made close-on-exec. With
    `unset_environment` the three variables are removed, so children do not
    inherit them. Returns {} when nothing was passed.
    """
    env = os.environ if env is None else env
    try:
        pid = env.get("LISTEN_PID")
        count = int(env.get("LISTEN_FDS") or 0)
        if not pid or int(pid) != os.getpid() or count <= 0:
            return {}
        names = env.get("LISTEN_FDNAMES")
        name_list = names.split(":") if names else []
        out: dict[str, list[int]] = {}
        for i in range(count):
            fd = LISTEN_FDS_START + i
            os.set_inheritable(fd, False)
            name = name_list[i] if i < len(name_list) and name_list[i] else "unknown"
            out.setdefault(name, []).append(fd)
        return out
    except ValueError:
        return {}
    finally:
        if unset_environment:
            for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                env.pop(var, None)

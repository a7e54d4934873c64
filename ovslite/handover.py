"""Restarts that keep the ports: handing their fds to the next instance.

A port survives a restart if the fds in its netdev's handover_fds() do: a TAP
fd keeps its device (with its addresses, routes and namespace) alive, a packet
socket keeps queueing the frames that arrive meanwhile. Two ways across:

- Under systemd (NOTIFY_SOCKET set), every port's fds go to the service
  manager's fd store (FDSTORE=1, FileDescriptorStoreMax= in the unit) as soon
  as the port opens, so they survive a crash too, and again whenever they
  change; del-port removes them (FDSTOREREMOVE=1). systemd gives them back to
  the next instance ($LISTEN_FDS) after `systemctl restart` or a crash
  restart (Restart=on-failure), and closes them on `systemctl stop`: the TAPs
  then vanish with their last fd.
- Without systemd, SIGUSR2 restarts the daemon in place: it prepares the
  hand-over, moves the fds to 3, 4, ... and exec()s itself with the same
  arguments, passing them the sd_listen_fds(3) way (LISTEN_PID, LISTEN_FDS,
  LISTEN_FDNAMES), so the same code picks them up.

Each fd is named "port/" + the port name, escaped to the printable ASCII
systemd accepts (%XX for anything else; ':' separates names in
$LISTEN_FDNAMES and never occurs in an interface name). A port may have
several fds under its name; the order in which they come back is not
defined, so the netdev tells them apart itself. Fds nobody claims once the
database is loaded (a port deleted while the daemon was down) are closed and
dropped from the store.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
from urllib.parse import quote, unquote

import structlog

from . import sdnotify

log = structlog.get_logger("ovslite.handover")

PREFIX = "port/"
#: how long del-port waits for systemd to drop a TAP's stored fd (BARRIER=1)
BARRIER_TIMEOUT = 1.0
#: characters kept as they are in fd names (besides letters and digits)
_SAFE = "!\"#$&'()*+,-./;<=>?@[\\]^_`{|}~"


def fd_name(port: str) -> str:
    """The fd store name of `port`'s fds."""
    return PREFIX + quote(port, safe=_SAFE, encoding="utf-8", errors="surrogateescape")


def port_of(name: str) -> str | None:
    """The port an fd store name belongs to, or None if it is not a port's."""
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        return None
    return unquote(name[len(PREFIX):], encoding="utf-8", errors="surrogateescape")


class Handover:
    """The fds a previous instance left, and the fd store of this one."""

    def __init__(self, inherited: dict[str, list[int]] | None = None, store: bool | None = None):
        #: port name -> handed-over fds not yet claimed
        self.ports: dict[str, list[int]] = {}
        #: other fd names we were given (not a port's) -> fds
        self.others: dict[str, list[int]] = {}
        for name, fds in (inherited or {}).items():
            port = port_of(name)
            if port is None:
                self.others.setdefault(name, []).extend(fds)
            else:
                self.ports.setdefault(port, []).extend(fds)
        #: whether fds go to systemd's fd store
        self.store = sdnotify.enabled() if store is None else store
        #: set for the hand-over at exit: closing a port keeps its stored fds
        self.frozen = False
        #: how many ports got fds back (for the log)
        self.claimed = 0

    @classmethod
    def from_environment(cls) -> Handover:
        """The fds passed by systemd or by our own exec ($LISTEN_FDS)."""
        inherited = sdnotify.listen_fds()
        if inherited:
            log.info("fds handed over", names=len(inherited),
                     fds=sum(len(fds) for fds in inherited.values()))
        return cls(inherited)

    # -- this instance's ports -----------------------------------------------
    def claim(self, port: str) -> list[int]:
        """The handed-over fds of `port` (its netdev now owns them), or []."""
        fds = self.ports.pop(port, [])
        if fds:
            self.claimed += 1
        return fds

    def opened(self, port: str, fds: list[int]) -> None:
        """`port` is open with `fds` (its handover_fds()): keep them in the store."""
        if not self.store:
            return
        name = fd_name(port)
        sdnotify.remove_fds(name)  # whatever was there before (an older set)
        if fds:
            sdnotify.store_fds(name, fds)

    def closed(self, port: str, holds_device: bool = False) -> None:
        """`port` is gone: drop its stored fds (unless handing over).

        With `holds_device` (a TAP), wait until systemd has closed its copy,
        so the device is gone on return, as it is without systemd.
        """
        if not self.store or self.frozen:
            return
        sdnotify.remove_fds(fd_name(port))
        if holds_device and not barrier(BARRIER_TIMEOUT):
            log.warning("systemd did not confirm dropping the port's stored fds", port=port)

    def close_unclaimed(self) -> list[str]:
        """Close the fds no port claimed and drop them from the store; their names."""
        names = []
        for port, fds in self.ports.items():
            names.append(fd_name(port))
            _close_all(fds)
        for name, fds in self.others.items():
            names.append(name)
            _close_all(fds)
        if names:
            log.info("closed handed-over fds nobody claimed", names=names)
        if self.store:
            for name in names:
                sdnotify.remove_fds(name)
        self.ports.clear()
        self.others.clear()
        return names

    def freeze(self) -> None:
        self.frozen = True


#: at most this many batches per port are forwarded after prepare_handover()
FLUSH_BATCHES = 64


def prepare(ports, handover: Handover, datapath=None) -> dict[str, list[int]]:
    """Ready every port for the next instance; {fd name: fds} to pass on.

    `ports` are the switch's Port objects. Once every port queues for the next
    instance, what they had already received is forwarded through `datapath`.
    The fds are stored again where a store exists. From here on, closing a
    port leaves its stored fds alone.
    """
    handover.freeze()
    named: dict[str, list[int]] = {}
    # Packet sockets first: their rings fill in milliseconds, while a TAP's
    # queue (and its resizing, a round trip into a container's namespace) can wait.
    for port in sorted(ports, key=lambda p: getattr(p.netdev, "fds_hold_device", False)):
        try:
            port.netdev.prepare_handover()
        except Exception:
            log.exception("cannot prepare the hand-over", port=port.name)
    if datapath is not None:
        flush(ports, datapath)
    for port in ports:
        fds = port.netdev.handover_fds()
        if fds:
            named[fd_name(port.name)] = list(fds)
            handover.opened(port.name, fds)
    return named


def flush(ports, datapath, batch: int = 64) -> int:
    """Forward what the ports received before prepare_handover(); how many frames."""
    total = 0
    for port in ports:
        if port.netdev.fileno() is None:
            continue
        for _ in range(FLUSH_BATCHES):
            try:
                packets = port.netdev.recv_batch(batch)
            except Exception:
                log.exception("cannot read the port before the hand-over", port=port.name)
                break
            if not packets:
                break
            datapath.input(port, packets, 0)
            total += len(packets)
    return total


# -- restart in place (without systemd) ------------------------------------------

def listen_env(named: dict[str, list[int]], pid: int) -> tuple[list[int], dict[str, str]]:
    """The fds in the order they go to 3, 4, ..., and the LISTEN_* variables."""
    order: list[int] = []
    names: list[str] = []
    for name in sorted(named):
        for fd in named[name]:
            order.append(fd)
            names.append(name)
    env = {"LISTEN_PID": str(pid), "LISTEN_FDS": str(len(order)),
           "LISTEN_FDNAMES": ":".join(names)}
    return order, env


def move_fds(order: list[int], start: int = sdnotify.LISTEN_FDS_START) -> None:
    """Put order[i] at fd start + i, inheritable; everything in that range is replaced.

    The fds are first copied above the range, so none is overwritten before it
    has been moved.
    """
    high = start + len(order)
    temps = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in order]
    for i, tmp in enumerate(temps):
        os.dup2(tmp, start + i, inheritable=True)
    for tmp in temps:
        os.close(tmp)


def own_command() -> list[str]:
    """This process's argv as the kernel has it (e.g. python -m ovslite --db ...)."""
    with open("/proc/self/cmdline", "rb") as f:
        raw = f.read()
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]]


def restart_in_place(named: dict[str, list[int]]) -> None:
    """exec() this program again with the same arguments, handing `named` over.

    Returns only if exec fails (OSError is raised).
    """
    argv = own_command()
    order, env = listen_env(named, os.getpid())
    log.info("restarting in place", fds=len(order), argv=argv)
    sys.stdout.flush()
    sys.stderr.flush()
    move_fds(order)
    os.execve(sys.executable, argv, {**os.environ, **env})


# -- helpers -------------------------------------------------------------------

def barrier(timeout: float) -> bool:
    """sd_notify_barrier(3): True once systemd has handled every earlier message.

    BARRIER=1 carries the write end of a pipe, which systemd closes once it
    gets there; the read end then reports a hang-up.
    """
    if not sdnotify.enabled():
        return True
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        sent = sdnotify.notify([w], BARRIER=1)
        os.close(w)
        w = -1
        if not sent:
            return False
        poller = select.poll()
        poller.register(r, select.POLLHUP)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass

"""The netdev provider interface: one class per port type, registered by name.

Modelled on Open vSwitch's `struct netdev_class` (lib/netdev-provider.h). A
provider owns one port's device and moves frames between it and the bridge.
The datapath never looks inside a provider; it only uses the methods below.

Packets cross this interface as bytes-like objects that begin with a 10-byte
`struct virtio_net_hdr` (see ovslite.vnet) followed by the Ethernet frame.
Every kernel-backed provider reads and writes that same layout (AF_PACKET with
PACKET_VNET_HDR, TAP with IFF_VNET_HDR), so a GSO super-frame with a partial
checksum passes from one port to another untouched: no copy, no segmentation.

Providers never block the event loop: `recv_batch` and `send_batch` are
non-blocking; `open` and `close` may do short netlink round trips and are
called only when configuration changes.

Restarts (ovslite.handover): `handover_fds()` names the fds that must outlive
this process for the port to survive a restart (a TAP fd keeps its device, a
packet socket keeps the frames queued on it); the daemon stores them in
systemd's fd store or passes them across exec(), and the next instance gives
them back to `open(inherited)`, which re-attaches instead of creating.
`prepare_handover()` runs just before such a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..portconfig import shown


class NetdevError(Exception):
    """A port could not be opened or configured; the message is user-facing."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


@dataclass
class LinkStatus:
    up: bool
    reason: str = ""


class Netdev:
    """Base class of every port type."""

    #: type name users pass to `add-port --type`, e.g. "system"
    type: ClassVar[str] = ""
    #: whether `open` creates a kernel device that `close` must remove
    creates_device: ClassVar[bool] = False
    #: option names this type accepts (validated by the switch before open)
    options: ClassVar[frozenset[str]] = frozenset()
    #: whether an fd from handover_fds() alone keeps a kernel device alive (a TAP):
    #: the device goes only once every copy, the fd store's included, is closed
    fds_hold_device: ClassVar[bool] = False

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        """Raise ValueError (one line) unless `options` suit a port `name` of this type.

        Pure: the switch and the database call it on configuration not yet
        applied. Subclasses extend it with their options' values.
        """
        for key, value in options.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"option without a name ({shown(key)})")
            if key not in cls.options:
                raise ValueError(f"port type {cls.type} has no option {shown(key)}")
            if not isinstance(value, str):
                raise ValueError(f"option {key}: {shown(value)} is not a string")

    def __init__(self, name: str, options: dict[str, str] | None = None):
        self.name = name
        self.config = dict(options or {})
        #: the device's link state as the link monitor last reported it
        self.link = LinkStatus(True)

    # -- lifecycle -----------------------------------------------------------
    def open(self, inherited: list[int] | None = None) -> None:
        """Acquire the device. Raises NetdevError with a one-line reason.

        May block briefly (netlink, ioctl). Called once per configuration change.

        `inherited`: fds a previous instance handed over for this port (its
        handover_fds(), in any order). The provider takes ownership of them:
        it checks they really are this port's device and re-attaches without
        creating, moving, renaming or configuring anything; fds it cannot use
        are closed, and it falls back to a normal open.
        """
        raise NotImplementedError

    def handover_fds(self) -> list[int]:
        """The fds that must survive a restart for this port to carry on ([]: none)."""
        return []

    def prepare_handover(self) -> None:
        """The process is about to hand its ports to the next instance: from now
        on frames must queue in the kernel where handover_fds() can reach them.
        Nothing is forwarded afterwards. Never raises."""

    def close(self) -> None:
        """Release the device; remove it from the kernel if this netdev made it.

        Never raises. Safe to call twice or after a failed open.
        """
        raise NotImplementedError

    # -- dataplane -----------------------------------------------------------
    def fileno(self) -> int | None:
        """The fd the event loop waits on for received frames, or None.

        None means frames arrive by other means (a patch port is fed by its
        peer's send_batch in the same loop pass).
        """
        raise NotImplementedError

    def recv_batch(self, limit: int) -> list:
        """Return up to `limit` received packets without blocking ([] if none)."""
        raise NotImplementedError

    def backlog_fileno(self) -> int | None:
        """A second fd to wait on, for frames that queued elsewhere (None: none).

        A system port's spill socket holds what arrived during a restart and
        what overflowed its ring; the datapath reads it with recv_backlog
        whenever it is readable, and once right after attaching the port.
        """
        return None

    def recv_backlog(self, limit: int) -> list:
        """Return up to about `limit` frames from the backlog without blocking."""
        return []

    def send_batch(self, packets: list) -> int:
        """Queue `packets` for transmission without blocking.

        Returns how many were accepted; the caller counts the rest as tx drops.
        """
        raise NotImplementedError

    #: For providers that live inside the daemon (patch): a method
    #: deliver_batch(packets, depth) -> int that the datapath calls instead of
    #: send_batch, passing how many bridges the frames crossed in this loop pass
    #: so loops stay bounded. None for every kernel-backed type.
    deliver_batch = None

    def resolve(self, port, ports: dict, datapath) -> None:
        """Re-check references to other ports after any configuration change.

        `port` is this netdev's bridge Port, `ports` every port by name. Most
        types refer to nothing and do nothing; status() reflects the outcome.
        """

    def set_mtu(self, mtu: int | None) -> None:
        """Set the device's MTU (None: leave it). Raises NetdevError.

        Types without a kernel device accept any value: ovslite enforces the
        limit on egress itself (ovslite.datapath).
        """

    # -- state ---------------------------------------------------------------
    def status(self) -> LinkStatus:
        """Whether the port can carry frames now, and if not, why."""
        return LinkStatus(True)

    def still_attached(self) -> bool:
        """After its device vanished from our namespace: is it alive elsewhere?

        True when the device was only moved to another namespace (a TAP whose
        fd still reaches it); the port then keeps working.
        """
        return False

    def kernel_device(self) -> str | None:
        """The device in the daemon's namespace whose link state this port follows."""
        return None

    def local_mac(self) -> bytes | None:
        """The MAC of the host's own interface behind this port, or None.

        Only a port that is the host's interface on the bridge (an internal port
        in the daemon's namespace) has one: it is the bridge's own address, which
        the bridge never learns from another port. May read the device (an
        ioctl): called on configuration and link changes, never per frame.
        """
        return None

    def drops(self) -> dict[str, int]:
        """Frames this provider dropped before the bridge saw them, by reason
        (counted with the port's rx drops)."""
        return {}

    def info(self) -> dict[str, str]:
        """Type-specific facts for `show` (ifindex, peer, namespace...)."""
        return {}

"""The switch: desired configuration in, bridges and open ports out.

Every change is made by editing a copy of the desired configuration and
reconciling actual state against it (open what is missing, close what is no
longer wanted). A command's change is persisted only once it has been applied,
so the database never holds a port the daemon refused. At start-up, a port that
cannot be opened stays configured and shows as down with the reason.
"""

from __future__ import annotations

import errno

import structlog

from . import db as dbmod
from .bridge import Bridge, Port
from .datapath import Datapath
from .mactable import DEFAULT_AGING, DEFAULT_SIZE
from .names import check_ifname
from .netdev import NetdevError, netdev_class

log = structlog.get_logger("ovslite.switch")


class SwitchError(Exception):
    """A refused request: `errno` for the protocol, message for the user."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


def _name(name: str, what: str) -> str:
    try:
        return check_ifname(name, what)
    except ValueError as exc:
        raise SwitchError(errno.EINVAL, str(exc)) from None


class Switch:
    def __init__(self, database: dbmod.ConfigDB, datapath: Datapath):
        self.db = database
        self.datapath = datapath
        self.desired: dict = dbmod.empty()
        self.bridges: dict[str, Bridge] = {}
        self.ports: dict[str, Port] = {}  # every port of every bridge, by name
        #: configured ports whose device could not be opened: name -> reason
        self.unopened: dict[str, str] = {}
        #: called as listener(event, **fields) for monitors
        self.listeners: list = []

    # -- start and stop -----------------------------------------------------
    def load(self) -> None:
        """Read the database (DatabaseError if corrupt) and bring it to life."""
        self.desired = self.db.load()
        self.reconcile()

    def shutdown(self) -> None:
        for name in list(self.bridges):
            self._remove_bridge(name)

    # -- queries ------------------------------------------------------------
    def bridge(self, name: str) -> Bridge:
        br = self.bridges.get(name)
        if br is None:
            raise SwitchError(errno.ENOENT, f"no bridge named {name}")
        return br

    def port(self, name: str, bridge: str | None = None) -> Port:
        port = self.ports.get(name)
        if port is None or (bridge is not None and port.bridge.name != bridge):
            where = f" on bridge {bridge}" if bridge else ""
            raise SwitchError(errno.ENOENT, f"no port named {name}{where}")
        return port

    def port_config(self, port: Port) -> dict:
        return self.desired["bridges"][port.bridge.name]["ports"][port.name]

    # -- commands -----------------------------------------------------------
    def add_bridge(self, name: str, may_exist: bool = False) -> None:
        _name(name, "bridge")
        if name in self.desired["bridges"]:
            if may_exist:
                return
            raise SwitchError(errno.EEXIST, f"bridge {name} already exists")
        if name in self.ports:
            raise SwitchError(errno.EEXIST, f"{name} is already a port on bridge {self.ports[name].bridge.name}")
        new = dbmod.clone(self.desired)
        # Like OVS, every bridge has an internal port of its own name: the host's way in.
        new["bridges"][name] = {"config": {}, "ports": {name: {"type": "internal", "options": {}}}}
        self._commit(new, strict=name)

    def del_bridge(self, name: str, if_exists: bool = False) -> None:
        if name not in self.desired["bridges"]:
            if if_exists:
                return
            raise SwitchError(errno.ENOENT, f"no bridge named {name}")
        new = dbmod.clone(self.desired)
        del new["bridges"][name]
        self._commit(new)

    def add_port(
        self,
        bridge: str,
        name: str,
        type: str = "system",
        options: dict[str, str] | None = None,
        may_exist: bool = False,
    ) -> None:
        _name(name, "port")
        if bridge not in self.desired["bridges"]:
            raise SwitchError(errno.ENOENT, f"no bridge named {bridge}")
        owner = self._port_owner(name)
        if owner is not None:
            if may_exist and owner == bridge:
                return
            raise SwitchError(errno.EEXIST, f"port {name} already exists on bridge {owner}")
        if name in self.desired["bridges"]:
            raise SwitchError(errno.EEXIST, f"{name} is a bridge name")
        options = dict(options or {})
        try:
            cls = netdev_class(type)
        except NetdevError as exc:
            raise SwitchError(errno.EINVAL, str(exc)) from None
        unknown = set(options) - cls.options
        if unknown:
            raise SwitchError(errno.EINVAL, f"port type {type} has no option {sorted(unknown)[0]!r}")
        new = dbmod.clone(self.desired)
        new["bridges"][bridge]["ports"][name] = {"type": type, "options": options}
        self._commit(new, strict=name)

    def del_port(self, name: str, bridge: str | None = None, if_exists: bool = False) -> None:
        owner = self._port_owner(name)
        if owner is None or (bridge is not None and owner != bridge):
            if if_exists:
                return
            where = f" on bridge {bridge}" if bridge else ""
            raise SwitchError(errno.ENOENT, f"no port named {name}{where}")
        if name == owner:
            raise SwitchError(
                errno.EINVAL,
                f"cannot delete port {name}: it is the local port of bridge {name} (use del-br)",
            )
        new = dbmod.clone(self.desired)
        del new["bridges"][owner]["ports"][name]
        self._commit(new)

    def _port_owner(self, name: str) -> str | None:
        for br_name, br in self.desired["bridges"].items():
            if name in br["ports"]:
                return br_name
        return None

    # -- reconciliation -----------------------------------------------------
    def _commit(self, new: dict, strict: str | None = None) -> None:
        """Apply `new`, then persist it. With `strict`, failing to open that
        port undoes the change and raises instead of leaving the port down."""
        old = self.desired
        self.desired = new
        try:
            self.reconcile(strict=strict)
            self.db.save(new)
        except NetdevError as exc:
            self.desired = old
            self.reconcile()
            raise SwitchError(exc.errno or errno.EINVAL, str(exc)) from None
        except OSError as exc:
            self.desired = old
            self.reconcile()
            raise SwitchError(exc.errno or errno.EIO, f"cannot save configuration: {exc.strerror}") from None

    def reconcile(self, strict: str | None = None) -> None:
        want = self.desired["bridges"]
        for name in [b for b in self.bridges if b not in want]:
            self._remove_bridge(name)
        for br_name, br_conf in want.items():
            br = self.bridges.get(br_name)
            if br is None:
                conf = br_conf.get("config", {})
                br = Bridge(
                    br_name,
                    aging=float(conf.get("mac-aging-time", DEFAULT_AGING)),
                    table_size=int(conf.get("mac-table-size", DEFAULT_SIZE)),
                )
                self.bridges[br_name] = br
                log.info("bridge added", bridge=br_name)
                self._notify("bridge-added", bridge=br_name)
            for port_name in [p for p in br.ports if p not in br_conf["ports"]]:
                self._remove_port(br, port_name)
            for port_name, port_conf in br_conf["ports"].items():
                port = br.ports.get(port_name)
                if port is not None and (
                    port.type != port_conf["type"] or port.netdev.config != port_conf.get("options", {})
                ):
                    self._remove_port(br, port_name)
                    port = None
                if port is None:
                    self._add_port(br, port_name, port_conf, strict == port_name)
        self._resolve()

    def _resolve(self) -> None:
        """Let ports that refer to other ports (patch peers) re-check them."""
        for port in self.ports.values():
            port.netdev.resolve(port, self.ports, self.datapath)
            if port.name in self.unopened:
                continue  # keeps the reason it failed to open with
            status = port.netdev.status()
            self.set_state(port, status.up, status.reason)

    def _add_port(self, br: Bridge, name: str, conf: dict, strict: bool) -> None:
        netdev = netdev_class(conf["type"])(name, conf.get("options", {}))
        port = Port(name, conf["type"], netdev)
        try:
            netdev.open()
        except NetdevError as exc:
            netdev.close()
            if strict:
                raise
            br.add_port(port)
            self.ports[name] = port
            self.unopened[name] = str(exc)
            self.set_state(port, False, str(exc))
            log.error("port open failed", bridge=br.name, port=name, error=str(exc))
            return
        br.add_port(port)
        self.ports[name] = port
        self.datapath.attach(port)
        log.info("port added", bridge=br.name, port=name, type=conf["type"])
        self._notify("port-added", bridge=br.name, port=name)

    def _remove_port(self, br: Bridge, name: str) -> None:
        port = br.ports[name]
        self.datapath.detach(port)
        self.datapath.taps.pop(port, None)
        port.netdev.close()
        br.remove_port(name)
        self.ports.pop(name, None)
        self.unopened.pop(name, None)
        log.info("port removed", bridge=br.name, port=name)
        self._notify("port-removed", bridge=br.name, port=name)

    def _remove_bridge(self, name: str) -> None:
        br = self.bridges[name]
        for port_name in list(br.ports):
            self._remove_port(br, port_name)
        del self.bridges[name]
        log.info("bridge removed", bridge=name)
        self._notify("bridge-removed", bridge=name)

    def set_state(self, port: Port, up: bool, reason: str = "") -> None:
        if port.bridge.set_port_state(port, up, reason):
            state = "up" if up else "down"
            log.info("port state", bridge=port.bridge.name, port=port.name, state=state, reason=reason)
            self._notify("port-state", bridge=port.bridge.name, port=port.name, state=state, reason=reason)

    def _notify(self, event: str, **fields) -> None:
        for listener in self.listeners:
            listener(event, **fields)

    # -- periodic -----------------------------------------------------------
    def run_timers(self, now: float) -> None:
        for br in self.bridges.values():
            aged = br.macs.expire(now)
            if aged:
                log.debug("macs aged", bridge=br.name, count=len(aged))

"""The switch: desired configuration in, bridges and open ports out.

Every change is made by editing a copy of the desired configuration
(ovslite.confedit, one pure function per command), checking that copy whole (ovslite.confcheck: names, types, options, settings, static
MACs, the same checks the database makes at load), and only then reconciling
actual state against it (open what is missing, close what is no longer wanted)
and saving it. A change that fails anywhere (a check, a port that will not
open, a save) is undone, so the running configuration and the database are
exactly as before it and the database never holds a change that was refused.
At start-up, a port that cannot be opened stays configured and shows as
down with the reason.
"""

from __future__ import annotations

import errno

import structlog

from . import confedit, linkmon, mirror, stpport
from . import db as dbmod
from .bridge import Bridge, Port
from .confedit import SwitchError
from .datapath import Datapath
from .mactable import DEFAULT_AGING, DEFAULT_SIZE
from .netdev import LinkStatus, NetdevError, netdev_class
from .vnet import format_mac, parse_mac

log = structlog.get_logger("ovslite.switch")


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
        #: restarts (ovslite.handover.Handover), set by the daemon: fds handed
        #: over by the previous instance, and the fd store of this one
        self.handover = None
        self.stp = stpport.StpManager(self)

    # -- start and stop -----------------------------------------------------
    def load(self) -> None:
        """Read the database (DatabaseError if corrupt) and bring it to life."""
        self.desired = self.db.load()
        self.reconcile()

    def reload(self) -> None:
        """Re-read the database (SIGHUP); a bad file (DatabaseError) changes nothing."""
        desired = self.db.load()
        old, self.desired = self.desired, desired
        try:
            self.reconcile()
        except BaseException:
            self.desired = old
            self.reconcile()
            raise

    def shutdown(self) -> None:
        self.stp.close()
        for name in list(self.bridges):
            self._remove_bridge(name)

    # -- queries ------------------------------------------------------------
    def bridge(self, name: str) -> Bridge:
        confedit.name(name, "bridge")
        br = self.bridges.get(name)
        if br is None:
            raise SwitchError(errno.ENOENT, f"no bridge named {name}")
        return br

    def port(self, name: str, bridge: str | None = None) -> Port:
        confedit.names(name, bridge)
        port = self.ports.get(name)
        if port is None or (bridge is not None and port.bridge.name != bridge):
            where = f" on bridge {bridge}" if bridge else ""
            raise SwitchError(errno.ENOENT, f"no port named {name}{where}")
        return port

    def port_config(self, port: Port) -> dict:
        return self.desired["bridges"][port.bridge.name]["ports"][port.name]

    # -- commands (the edits themselves are in ovslite.confedit) -----------------
    def add_bridge(self, name: str, may_exist: bool = False) -> None:
        self._commit(confedit.add_bridge(self.desired, name, may_exist), strict=name)

    def del_bridge(self, name: str, if_exists: bool = False) -> None:
        self._commit(confedit.del_bridge(self.desired, name, if_exists))

    def add_port(
        self,
        bridge: str,
        name: str,
        type: str = "system",
        options: dict[str, str] | None = None,
        may_exist: bool = False,
        settings: dict | None = None,
    ) -> None:
        """Add a port; `settings` (as for set_port) are applied with it, atomically."""
        new = confedit.add_port(self.desired, bridge, name, type, options, may_exist, settings)
        self._commit(new, strict=name)

    def del_port(self, name: str, bridge: str | None = None, if_exists: bool = False) -> None:
        """Remove a port and, as the Linux bridge and OVS do, its static MACs."""
        self._commit(confedit.del_port(self.desired, name, bridge, if_exists))

    def set_port(self, name: str, changes: dict) -> None:
        """Change switching settings (portconfig.KNOWN) of a live port; '' resets one."""
        self._commit(confedit.set_port(self.desired, name, changes))

    def set_bridge(self, name: str, changes: dict) -> None:
        """mac-aging-time=SECONDS, mac-table-size=N, forward-bpdu=on|off ('' resets one)."""
        self._commit(confedit.set_bridge(self.desired, name, changes))

    def add_mirror(self, bridge: str, name: str, conf: dict) -> None:
        """A port mirror (ovslite.mirror); `conf` as stored, checked whole first."""
        self._commit(confedit.add_mirror(self.desired, bridge, name, conf))

    def del_mirror(self, bridge: str, name: str) -> None:
        self._commit(confedit.del_mirror(self.desired, bridge, name))

    def fdb_add(self, bridge: str, mac: bytes, port: str, vlan: int | None = None,
                remote: str | None = None) -> None:
        """A static entry: never aged, never moved by learning; kept in the database.
        Without `vlan`: in each VLAN the port carries (as `bridge fdb add`). With
        `remote` (a tunnel port's remote_ip): known unicast goes to that remote only."""
        self._commit(confedit.fdb_add(self.desired, bridge, mac, port, vlan, remote))

    def fdb_del(self, bridge: str, mac: bytes, vlan: int | None = None) -> None:
        """Remove MAC's entries, static or learned: in `vlan`, or in every VLAN."""
        br = self.bridge(bridge)
        new = confedit.fdb_del(self.desired, bridge, mac, vlan)
        tables = br.macs.vlans.values() if vlan is None else [br.macs.vlans.get(vlan, {})]
        learned = [t[mac] for t in tables if mac in t and not t[mac].static]
        if new is None and not learned:
            where = "any VLAN" if vlan is None else f"VLAN {vlan}"
            raise SwitchError(errno.ENOENT,
                              f"no entry for {format_mac(mac)} in {where} on bridge {bridge}")
        for e in learned:
            br.macs.delete(e.vlan, e.mac)
        self._commit(new)

    def fdb_flush(self, bridge: str, port: str | None = None) -> int:
        """Forget learned entries (static ones stay, as with `bridge fdb flush`)."""
        br = self.bridge(bridge)
        target = self.port(port, bridge) if port is not None else None
        return br.macs.flush(target)

    # -- reconciliation -----------------------------------------------------
    def _commit(self, new: dict | None, strict: str | None = None) -> None:
        """Check `new` whole, then apply and persist it as one step: if opening a
        port (with `strict`, that port; others may stay down), setting an MTU or
        saving fails, the previous configuration is restored, running and stored.
        None: nothing to do."""
        if new is None:
            return
        try:
            dbmod.validate(new)
        except dbmod.DatabaseError as exc:
            raise SwitchError(errno.EINVAL, str(exc)) from None
        old = self.desired
        self.desired = new
        try:
            self.reconcile(strict=strict)
            self.db.save(new, checked=True)
        except BaseException as exc:
            self.desired = old
            self.reconcile()
            if isinstance(exc, NetdevError):
                raise SwitchError(exc.errno or errno.EINVAL, str(exc)) from None
            if isinstance(exc, OSError):
                raise SwitchError(exc.errno or errno.EIO,
                                  f"cannot save configuration: {exc.strerror or exc}") from None
            raise

    def reconcile(self, strict: str | None = None) -> None:
        want = self.desired["bridges"]
        for name in [b for b in self.bridges if b not in want]:
            self._remove_bridge(name)
        for br_name, br_conf in want.items():
            br = self.bridges.get(br_name)
            if br is None:
                br = self.bridges[br_name] = Bridge(br_name)
                log.info("bridge added", bridge=br_name)
                self.notify("bridge-added", bridge=br_name)
            conf = br_conf.get("config", {})
            br.set_aging(conf.get("mac-aging-time", DEFAULT_AGING))
            br.macs.resize(int(conf.get("mac-table-size", DEFAULT_SIZE)))
            br.forward_bpdu = bool(conf.get("forward-bpdu", False))
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
                    port = br.ports[port_name]
                settings = port_conf.get("settings", {})
                if port.settings != settings:
                    self._configure_port(port, settings)
            self._sync_statics(br, conf.get("static-macs", []))
            self._configure_mirrors(br, br_conf.get("mirrors", {}))
        self._resolve()
        self.stp.sync()

    def _configure_mirrors(self, br: Bridge, conf: dict) -> None:
        before = set(br.mirrors.by_name) if br.mirrors is not None else set()
        mirror.configure(br, conf)
        for name in sorted(before - conf.keys()):
            log.info("mirror removed", bridge=br.name, mirror=name)
            self.notify("mirror-removed", bridge=br.name, mirror=name)
        for name in sorted(conf.keys() - before):
            log.info("mirror added", bridge=br.name, mirror=name)
            self.notify("mirror-added", bridge=br.name, mirror=name)

    def _configure_port(self, port: Port, settings: dict) -> None:
        mtu = settings.get("mtu")
        if mtu != port.settings.get("mtu") and port.name not in self.unopened:
            port.netdev.set_mtu(mtu)  # NetdevError: the commit is undone
        before = (port.up, port.reason)
        port.bridge.configure_port(port, settings)
        log.info("port settings", bridge=port.bridge.name, port=port.name, **settings)
        self.notify("port-settings", bridge=port.bridge.name, port=port.name)
        if (port.up, port.reason) != before:  # admin=up/down
            self.notify("port-state", bridge=port.bridge.name, port=port.name,
                         state="up" if port.up else "down", reason=port.reason)

    def _sync_statics(self, br: Bridge, wanted: list) -> None:
        want = {(e["vlan"], parse_mac(e["mac"])): e["port"] for e in wanted}
        have = {k: e for k, e in br.macs.entries.items() if e.static}
        now = self.datapath.clock()
        for key, entry in have.items():
            if want.get(key) != entry.port.name:
                br.macs.delete(*key)
        for (vlan, mac), port_name in want.items():
            port = br.ports.get(port_name)
            current = br.macs.entries.get((vlan, mac))
            if port is not None and not (current and current.static and current.port is port):
                br.macs.add_static(vlan, mac, port, now)
        pins: dict[str, dict[bytes, str]] = {}  # fdb-add --remote, per tunnel port
        for e in wanted:
            if "remote" in e:
                pins.setdefault(e["port"], {})[parse_mac(e["mac"])] = e["remote"]
        for port in br.ports.values():
            if hasattr(port.netdev, "pin"):
                port.netdev.pin(pins.get(port.name, {}))

    def _resolve(self) -> None:
        """Let ports that refer to other ports (patch peers) re-check them."""
        self.datapath.flows.clear()  # a flow may follow a patch cable that changed
        for port in self.ports.values():
            port.netdev.resolve(port, self.ports, self.datapath)
            if port.name in self.unopened:
                continue  # keeps the reason it failed to open with
            status = port.netdev.status()
            self.set_state(port, status.up, status.reason)

    def _add_port(self, br: Bridge, name: str, conf: dict, strict: bool) -> None:
        netdev = netdev_class(conf["type"])(name, conf.get("options", {}))
        port = Port(name, conf["type"], netdev)
        inherited = self.handover.claim(name) if self.handover is not None else []
        try:
            if inherited:
                netdev.open(inherited)  # re-attach to what the previous instance left
            else:
                netdev.open()
        except NetdevError as exc:
            netdev.close()
            self._handover_closed(port)
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
        self._handover_opened(port)
        self._read_link(netdev)
        log.info("port added", bridge=br.name, port=name, type=conf["type"])
        self.notify("port-added", bridge=br.name, port=name)

    def _remove_port(self, br: Bridge, name: str) -> None:
        port = br.ports[name]
        self.datapath.detach(port)
        self.datapath.taps.pop(port, None)
        port.netdev.close()
        self._handover_closed(port)
        br.remove_port(name)
        self.ports.pop(name, None)
        self.unopened.pop(name, None)
        log.info("port removed", bridge=br.name, port=name)
        self.notify("port-removed", bridge=br.name, port=name)

    def _remove_bridge(self, name: str) -> None:
        br = self.bridges[name]
        for port_name in list(br.ports):
            self._remove_port(br, port_name)
        del self.bridges[name]
        log.info("bridge removed", bridge=name)
        self.notify("bridge-removed", bridge=name)

    # -- restarts (ovslite.handover) -------------------------------------------
    def _handover_opened(self, port: Port) -> None:
        if self.handover is not None:
            self.handover.opened(port.name, port.netdev.handover_fds())

    def _handover_closed(self, port: Port) -> None:
        if self.handover is not None:
            self.handover.closed(port.name, getattr(port.netdev, "fds_hold_device", False))

    def set_state(self, port: Port, link_up: bool, reason: str = "") -> None:
        """The port's link went up or down; admin state is applied by the bridge."""
        port.bridge.set_local_mac(port, port.netdev.local_mac())  # it may have changed too
        if port.bridge.set_port_state(port, link_up, reason):
            state = "up" if port.up else "down"
            log.info("port state", bridge=port.bridge.name, port=port.name, state=state,
                     reason=port.reason)
            self.notify("port-state", bridge=port.bridge.name, port=port.name, state=state,
                         reason=port.reason)
            self.stp.link(port)

    @staticmethod
    def _read_link(netdev) -> None:
        device = netdev.kernel_device()
        flags = linkmon.query(device) if device else None
        if flags is not None:
            netdev.link = LinkStatus(*linkmon.link_state(flags))

    def link_event(self, name: str, index: int, flags: int, deleted: bool) -> None:
        """rtnetlink news about device `name` (see ovslite.linkmon)."""
        port = self.ports.get(name)
        if port is None or port.netdev.kernel_device() != name:
            return
        netdev = port.netdev
        if deleted and name not in self.unopened and netdev.still_attached():
            # Moved to another namespace (e.g. a TAP given to a container): it still
            # works, but its link state can no longer be watched from here.
            log.info("port device left the namespace", bridge=port.bridge.name, port=name)
            netdev.link = LinkStatus(True)
            self.set_state(port, True)
            return
        if deleted:
            if name not in self.unopened:
                self.datapath.detach(port)
                netdev.close()
                self._handover_closed(port)
                self.unopened[name] = f"interface {name} was removed"
                log.warning("port device removed", bridge=port.bridge.name, port=name)
            self.set_state(port, False, self.unopened[name])
            return
        if name in self.unopened:
            if netdev.creates_device:
                return  # ours, and gone: a namesake is not ours to take
            try:
                netdev.open()
            except NetdevError:
                return
            del self.unopened[name]
            self.datapath.attach(port)
            self._handover_opened(port)
            log.info("port device back", bridge=port.bridge.name, port=name)
            self._apply_mtu(port)
        was_up = netdev.link.up
        netdev.link = LinkStatus(*linkmon.link_state(flags))
        if netdev.link.up and not was_up:
            # Going down left an error on the port's socket, and the event loop
            # stops watching an fd that reported one: clear it and watch again.
            self.datapath.rearm(port)
        self.set_state(port, netdev.link.up, netdev.link.reason)

    def routes_changed(self) -> None:
        """Routes or addresses changed (ovslite.linkmon): ports whose state
        depends on routing (tunnels: "no route to X", inner MTU) check again."""
        if any(getattr(p.netdev, "split_horizon", False) for p in self.ports.values()):
            self._resolve()

    def _apply_mtu(self, port: Port) -> None:
        """A device that came back has its default MTU: give it the configured one."""
        mtu = port.settings.get("mtu")
        if mtu is not None:
            try:
                port.netdev.set_mtu(mtu)
            except NetdevError as exc:
                log.error("cannot restore mtu", bridge=port.bridge.name, port=port.name,
                          error=str(exc))

    def notify(self, event: str, **fields) -> None:
        for listener in list(self.listeners):  # a listener may remove itself
            listener(event, **fields)

    # -- periodic -----------------------------------------------------------
    def run_timers(self, now: float) -> None:
        for br in self.bridges.values():
            aged = br.macs.expire(now)
            if aged:
                log.debug("macs aged", bridge=br.name, count=len(aged))

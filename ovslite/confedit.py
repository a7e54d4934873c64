"""Each configuration command as an edit: the desired configuration in, a new one out.

Pure functions over the database's document (ovslite.db): they look names up,
refuse what cannot be (SwitchError with an errno and one line) and return an
edited copy, or None when there is nothing to do (--may-exist, --if-exists).
They never touch the running switch: ovslite.switch checks the result whole
(ovslite.confcheck), applies it and saves it, or undoes it. An edit also takes
along what refers to what it deletes: del-port the port's static MACs (as the
Linux bridge and OVS drop a port's fdb entries, and takes it out of the port
mirrors, see ovslite.mirror), del-br everything of the bridge.
A patch port's `peer` may name a port that is gone: that port shows down.
"""

from __future__ import annotations

import errno

from . import confcheck, mirrorconf, portconfig
from .db import clone
from .names import check_ifname
from .vnet import parse_mac


class SwitchError(Exception):
    """A refused request: `errno` for the protocol, message for the user."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


def checked(check, *args):
    """check(*args), its ValueError turned into a refusal (EINVAL, the same message)."""
    try:
        return check(*args)
    except ValueError as exc:
        raise SwitchError(errno.EINVAL, str(exc)) from None


def name(text: str, what: str) -> str:
    return checked(check_ifname, text, what)


def names(port: str, bridge: str | None) -> None:
    name(port, "port")
    if bridge is not None:
        name(bridge, "bridge")


def port_owner(desired: dict, port: str) -> str | None:
    for br_name, br in desired["bridges"].items():
        if port in br["ports"]:
            return br_name
    return None


def _bridge(desired: dict, bridge: str) -> dict:
    name(bridge, "bridge")
    conf = desired["bridges"].get(bridge)
    if conf is None:
        raise SwitchError(errno.ENOENT, f"no bridge named {bridge}")
    return conf


def add_bridge(desired: dict, bridge: str, may_exist: bool = False) -> dict | None:
    name(bridge, "bridge")
    if bridge in desired["bridges"]:
        if may_exist:
            return None
        raise SwitchError(errno.EEXIST, f"bridge {bridge} already exists")
    owner = port_owner(desired, bridge)
    if owner is not None:
        raise SwitchError(errno.EEXIST, f"{bridge} is already a port on bridge {owner}")
    new = clone(desired)
    # Like OVS, every bridge has an internal port of its own name: the host's way in.
    new["bridges"][bridge] = {"config": {}, "ports": {bridge: {"type": "internal", "options": {}}}}
    return new


def del_bridge(desired: dict, bridge: str, if_exists: bool = False) -> dict | None:
    name(bridge, "bridge")
    if bridge not in desired["bridges"]:
        if if_exists:
            return None
        raise SwitchError(errno.ENOENT, f"no bridge named {bridge}")
    new = clone(desired)
    del new["bridges"][bridge]  # its ports, settings and static MACs with it
    return new


def add_port(desired: dict, bridge: str, port: str, type_: str, options: dict | None,
             may_exist: bool = False, settings: dict | None = None) -> dict | None:
    names(port, bridge)
    _bridge(desired, bridge)
    owner = port_owner(desired, port)
    if owner is not None:
        if may_exist and owner == bridge:
            return None
        raise SwitchError(errno.EEXIST, f"port {port} already exists on bridge {owner}")
    if port in desired["bridges"]:
        raise SwitchError(errno.EEXIST, f"{port} is a bridge name")
    options = {} if options is None else options
    checked(confcheck.check_options, port, type_, options)
    conf = {"type": type_, "options": dict(options)}
    if settings:
        conf["settings"] = checked(_settings, port, {}, settings)
    new = clone(desired)
    new["bridges"][bridge]["ports"][port] = conf
    return new


def del_port(desired: dict, port: str, bridge: str | None = None,
             if_exists: bool = False) -> dict | None:
    names(port, bridge)
    owner = port_owner(desired, port)
    if owner is None or (bridge is not None and owner != bridge):
        if if_exists:
            return None
        where = f" on bridge {bridge}" if bridge else ""
        raise SwitchError(errno.ENOENT, f"no port named {port}{where}")
    if port == owner:
        raise SwitchError(errno.EINVAL, f"cannot delete port {port}: it is the local port of "
                          f"bridge {port} (use del-br)")
    new = clone(desired)
    del new["bridges"][owner]["ports"][port]
    config = new["bridges"][owner].get("config", {})
    if "static-macs" in config:
        config["static-macs"] = [e for e in config["static-macs"] if e["port"] != port]
    if "mirrors" in new["bridges"][owner]:
        new["bridges"][owner]["mirrors"] = mirrorconf.without_port(new["bridges"][owner]["mirrors"], port)
    return new


def set_port(desired: dict, port: str, changes: dict) -> dict:
    """A change that would leave one of the port's static MACs in a VLAN it no longer
    carries is refused, naming the entry: dropping the entry would lose configuration
    without a word, keeping it would keep an entry that is never used."""
    name(port, "port")
    owner = port_owner(desired, port)
    if owner is None:
        raise SwitchError(errno.ENOENT, f"no port named {port}")
    br_conf = desired["bridges"][owner]
    settings = checked(_settings, port, br_conf["ports"][port].get("settings", {}), changes)
    for e in br_conf.get("config", {}).get("static-macs", []):
        if e["port"] == port and not portconfig.carries(settings, e["vlan"]):
            raise SwitchError(errno.EINVAL, f"port {port} would no longer carry VLAN "
                              f"{e['vlan']} of its static MAC {e['mac']} (fdb-del it first)")
    new = clone(desired)
    new["bridges"][owner]["ports"][port]["settings"] = settings
    return new


def _settings(port: str, current: dict, changes) -> dict:
    try:
        return portconfig.merge(current, portconfig.parse(changes))
    except ValueError as exc:
        raise ValueError(f"port {port}: {exc}") from None


def set_bridge(desired: dict, bridge: str, changes: dict) -> dict:
    _bridge(desired, bridge)
    if not isinstance(changes, dict):
        raise SwitchError(errno.EINVAL, "bridge settings must be KEY=VALUE pairs")
    config = dict(desired["bridges"][bridge].get("config", {}))
    for key, text in changes.items():
        value = checked(confcheck.parse_bridge_setting, key, text)
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    new = clone(desired)
    new["bridges"][bridge]["config"] = config
    return new


def fdb_add(desired: dict, bridge: str, mac: bytes, port: str, vlan: int | None,
            remote: str | None = None) -> dict:
    """Like `bridge fdb add`: without `vlan`, one entry in each VLAN the port carries
    (portconfig.static_vlans); a VLAN the port does not carry is refused. `remote`
    pins MAC to one remote of a tunnel port (as `bridge fdb add MAC dev vxlan0 dst IP`)."""
    _bridge(desired, bridge)
    name(port, "port")
    if port_owner(desired, port) != bridge:
        raise SwitchError(errno.ENOENT, f"no port named {port} on bridge {bridge}")
    text = checked(confcheck.check_static_mac, mac)
    port_conf = desired["bridges"][bridge]["ports"][port]
    if remote is not None:
        remote = checked(confcheck.check_static_remote, port, port_conf, remote)
    settings = port_conf.get("settings", {})
    if vlan is None:
        vlans = portconfig.static_vlans(settings)
    elif portconfig.carries(settings, vlan):
        vlans = [vlan]
    else:
        raise SwitchError(errno.EINVAL, f"port {port} does not carry VLAN {vlan}")
    new = clone(desired)
    config = new["bridges"][bridge].setdefault("config", {})
    statics = [e for e in config.get("static-macs", [])
               if not (e["mac"] == text and e["vlan"] in vlans)]
    extra = {} if remote is None else {"remote": remote}
    statics += [{"mac": text, "vlan": v, "port": port, **extra} for v in vlans]
    config["static-macs"] = statics
    return new


def fdb_del(desired: dict, bridge: str, mac: bytes, vlan: int | None) -> dict | None:
    """Without MAC's static entries (in `vlan`, or in every VLAN); None if it has none."""
    statics = _bridge(desired, bridge).get("config", {}).get("static-macs", [])
    kept = [e for e in statics if not (parse_mac(e["mac"]) == mac and vlan in (None, e["vlan"]))]
    if len(kept) == len(statics):
        return None
    new = clone(desired)
    new["bridges"][bridge]["config"]["static-macs"] = kept
    return new


def add_mirror(desired: dict, bridge: str, name: str, conf: dict) -> dict:
    """A new mirror, as add-mirror gives it (ovslite.mirrorconf.check with new=True)."""
    br = _bridge(desired, bridge)
    checked(mirrorconf.check_name, name)
    if name in br.get("mirrors", {}):
        raise SwitchError(errno.EEXIST, f"mirror {name} already exists on bridge {bridge}")
    checked(mirrorconf.check, name, conf, br["ports"], True)
    new = clone(desired)
    new["bridges"][bridge].setdefault("mirrors", {})[name] = dict(conf)
    return new


def del_mirror(desired: dict, bridge: str, name: str) -> dict:
    br = _bridge(desired, bridge)
    if name not in br.get("mirrors", {}):
        raise SwitchError(errno.ENOENT, f"no mirror named {name} on bridge {bridge}")
    new = clone(desired)
    mirrors = new["bridges"][bridge]["mirrors"]
    del mirrors[name]
    if not mirrors:
        del new["bridges"][bridge]["mirrors"]
    return new

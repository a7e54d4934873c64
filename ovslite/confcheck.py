"""The desired configuration, checked whole: one checker per thing, shared by every door.

The commands (ovslite.switch) run `check_bridges` on the configuration they are
about to apply, before anything is applied; the database (ovslite.db) runs the
same function on what it loads. So a hand-edited file cannot hold what a
command would refuse, and a command cannot store what the next start would
refuse. Each checker takes what a request carries (text) or what the database
holds (typed JSON values, which must then be of exactly the type the checker
produces) and raises ValueError with a one-line message naming the bridge, port
or entry; nothing here touches a device, a file or the running switch.

Layout checked (db.py shows an example):
    bridges: {NAME: {"config": {SETTING: value, "static-macs": [ENTRY...]},
                     "ports": {NAME: {"type": T, "options": {str: str}, "settings": {...}}},
                     "mirrors": {NAME: {...}}}}   (ovslite.mirrorconf)
Unknown keys are refused: a misspelt key in a hand-edited file would otherwise
be ignored without a word. Limits: a port's options are checked as far as they
can be without the system (an `ip netns` namespace that does not exist yet
leaves the port down with the reason, as a missing interface does).
"""

from __future__ import annotations

import ipaddress
import math

from . import mirrorconf, portconfig, stpconfig
from .names import check_ifname
from .portconfig import shown
from .vnet import format_mac, parse_mac

#: the settings set-br takes (parse_bridge_setting checks them)
BRIDGE_SETTINGS = ("mac-aging-time", "mac-table-size", "forward-bpdu", *stpconfig.BRIDGE_KEYS)
BRIDGE_KEYS = frozenset({"config", "ports", "mirrors"})
PORT_KEYS = frozenset({"type", "options", "settings"})
STATIC_KEYS = frozenset({"mac", "vlan", "port"})
#: and optionally: a remote of the entry's tunnel port (fdb-add --remote)
STATIC_OPTIONAL_KEYS = frozenset({"remote"})


def _number(key: str, raw, integer: bool) -> int | float:
    kinds = (int,) if integer else (int, float)
    if isinstance(raw, str):
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise ValueError(f"{key}: {shown(raw)} is not a number") from None
    elif type(raw) in kinds:
        value = raw
    else:
        raise ValueError(f"{key}: {shown(raw)} is not a number")
    if not 0 < value < math.inf:  # also refuses NaN
        raise ValueError(f"{key}: must be positive")
    return value


def parse_bridge_setting(key: str, raw):
    """One set-br setting's value (text or typed) -> typed; None for '' (back to the default)."""
    if key not in BRIDGE_SETTINGS:
        raise ValueError(f"unknown bridge setting {shown(key)} (known: {', '.join(BRIDGE_SETTINGS)})")
    if raw is None or isinstance(raw, str) and raw == "":
        return None
    if key == "forward-bpdu":
        return portconfig.parse_bool(key, raw)
    if key in stpconfig.BRIDGE_KEYS:
        return stpconfig.parse_bridge(key, raw)
    value = _number(key, raw, key == "mac-table-size")
    return float(value) if key == "mac-aging-time" and isinstance(raw, str) else value


def check_bridges(bridges) -> None:
    """Raise ValueError unless `bridges` (a database's "bridges") is a valid configuration."""
    if not isinstance(bridges, dict):
        raise ValueError("'bridges' must be an object")
    owner: dict[str, str] = {}
    for br_name, br in bridges.items():
        check_ifname(br_name, "bridge")
        if not isinstance(br, dict) or not isinstance(br.get("ports"), dict):
            raise ValueError(f"bridge {br_name}: 'ports' must be an object")
        _no_unknown(br, BRIDGE_KEYS, f"bridge {br_name}")
        for port_name, port in br["ports"].items():
            if port_name in owner:
                raise ValueError(f"port {shown(port_name)} is on more than one bridge")
            owner[port_name] = br_name
            try:
                check_port(port_name, port)
            except ValueError as exc:
                raise ValueError(f"bridge {br_name}: {exc}") from None
    for br_name, br in bridges.items():
        if br_name in owner and owner[br_name] != br_name:
            raise ValueError(f"bridge {br_name}: its name is a port of bridge {owner[br_name]}")
        try:
            check_bridge_config(br.get("config", {}), br["ports"])
            mirrorconf.check_all(br.get("mirrors", {}), br["ports"])
        except ValueError as exc:
            raise ValueError(f"bridge {br_name}: {exc}") from None


def check_port(name: str, port) -> None:
    check_ifname(name, "port")
    if not isinstance(port, dict):
        raise ValueError(f"port {name}: must be an object")
    _no_unknown(port, PORT_KEYS, f"port {name}")
    check_options(name, port.get("type"), port.get("options", {}))
    settings = port.get("settings", {})
    try:
        if not isinstance(settings, dict) or not _same(portconfig.parse(settings), settings):
            raise ValueError("'settings' must be an object of typed values")
        for key, value in settings.items():
            if value is None:  # parse's "back to the default": not a stored value
                raise ValueError(f"{key}: no value")
        portconfig.check_vlans(settings)
    except ValueError as exc:
        raise ValueError(f"port {name}: {exc}") from None


def check_options(name: str, type_name, options) -> None:
    """A port's type and type-specific options, as the type itself defines them."""
    # Imported here: the providers are the daemon's, ovslite-ctl has no use for them.
    from .netdev import NetdevError, netdev_class

    if not isinstance(type_name, str):
        raise ValueError(f"port {name}: 'type' must be a string")
    try:
        cls = netdev_class(type_name)
    except NetdevError as exc:
        raise ValueError(f"port {name}: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"port {name}: 'options' must be an object")
    try:
        cls.check_options(name, options)
    except ValueError as exc:
        raise ValueError(f"port {name}: {exc}") from None


def check_bridge_config(config, ports: dict) -> None:
    if not isinstance(config, dict):
        raise ValueError("'config' must be an object")
    for key, value in config.items():
        if key == "static-macs":
            continue
        parsed = parse_bridge_setting(key, value)
        if parsed is None or not _same(parsed, value):
            raise ValueError(f"{key}: {shown(value)} is not a value set-br stores")
    stpconfig.check_bridge(config)
    check_statics(config.get("static-macs", []), ports)


def check_statics(statics, ports: dict) -> None:
    """Static MAC entries: each names a port of the bridge that carries the entry's VLAN."""
    if not isinstance(statics, list):
        raise ValueError("'static-macs' must be a list")
    seen = set()
    pinned: dict[tuple[str, str], str] = {}
    for e in statics:
        if not isinstance(e, dict) or not STATIC_KEYS <= set(e) <= STATIC_KEYS | STATIC_OPTIONAL_KEYS:
            raise ValueError(f"static-macs: {shown(e)} is not an object of mac, vlan, port "
                             "and optionally remote")
        mac, vlan, port = e["mac"], e["vlan"], e["port"]
        if not isinstance(mac, str):
            raise ValueError(f"static-macs: {shown(mac)} is not a MAC address")
        mac = check_static_mac(parse_mac(mac))
        if type(vlan) is not int or not 0 <= vlan <= 4094:
            raise ValueError(f"static MAC {mac}: {shown(vlan)} is not a VLAN (0-4094)")
        if not isinstance(port, str) or port not in ports:
            raise ValueError(f"static MAC {mac} in VLAN {vlan}: names no port of the bridge "
                             f"({shown(port)})")
        if (vlan, mac) in seen:
            raise ValueError(f"static MAC {mac} in VLAN {vlan}: listed twice")
        seen.add((vlan, mac))
        if not portconfig.carries(ports[port].get("settings", {}), vlan):
            raise ValueError(f"static MAC {mac} in VLAN {vlan}: port {port} does not carry "
                             f"VLAN {vlan}")
        if "remote" in e:
            remote = e["remote"]
            try:
                if not isinstance(remote, str) or check_static_remote(port, ports[port], remote) != remote:
                    raise ValueError(f"{shown(remote)} is not an address as fdb-add stores it")
            except ValueError as exc:
                raise ValueError(f"static MAC {mac} in VLAN {vlan}: {exc}") from None
            if pinned.setdefault((port, mac), remote) != remote:  # the port keeps one per MAC
                raise ValueError(f"static MAC {mac}: pinned to both {pinned[(port, mac)]} and "
                                 f"{remote} on port {port}")


def check_static_remote(port: str, port_conf: dict, text: str) -> str:
    """`text` as one of the remotes of tunnel port `port` (the address normalised),
    for a MAC pinned to it; ValueError if the port is no tunnel or has no such remote."""
    from .tunnel.options import TUNNEL_TYPES, parse_options

    if port_conf.get("type") not in TUNNEL_TYPES:
        raise ValueError(f"--remote: port {port} is not a tunnel port (vxlan, geneve, gre)")
    try:
        remote = str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"--remote: {shown(text)} is not an IP address") from None
    remotes = [str(r) for r in parse_options(port_conf["type"], port_conf.get("options", {})).remote_ips]
    if remote not in remotes:
        raise ValueError(f"--remote: {remote} is not a remote of port {port} "
                         f"(remote_ip={','.join(remotes)})")
    return remote


def check_static_mac(mac: bytes) -> str:
    """What `bridge fdb add` takes (is_valid_ether_addr): neither a group nor all zeros."""
    text = format_mac(mac)
    if mac[0] & 1:
        raise ValueError(f"{text} is a group address")
    if not any(mac):
        raise ValueError(f"{text} is not a valid station address")
    return text


def _no_unknown(obj: dict, known: frozenset, where: str) -> None:
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key {shown(unknown[0])}")


def _same(a, b) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True for ==)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b

"""Port mirrors' configuration: checks of what is stored and what requests carry.

`check` validates one mirror as the database holds it (ovslite.confcheck runs
`check_all` for the database and every command; add-mirror passes new=True,
which also wants an output and a selection); `without_port` is what del-port
does to the mirrors; the rest converts between the control protocol's values
and the stored form. The stored form, under a bridge's "mirrors":

    {NAME: {"select-all": true, "select-src-port": [PORT...], "select-dst-port": [PORT...],
            "select-vlan": [VLAN...], "output-port": PORT | "output-vlan": VLAN}}

(keys absent when not set). Semantics and the running side: ovslite.mirror.
"""

from __future__ import annotations

import re

from .portconfig import parse_trunks, shown

#: the keys a mirror's stored configuration may have
KEYS = frozenset({"select-all", "select-src-port", "select-dst-port", "select-vlan",
                  "output-port", "output-vlan"})
NAME = re.compile(r"[A-Za-z0-9_.:@+-]{1,64}")
#: mirrors one bridge may have (OVS: MAX_MIRRORS, 32)
MAX_MIRRORS = 32

# -- configuration ---------------------------------------------------------------------------
def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"invalid mirror name {shown(name)} (1-64 letters, digits or _.:@+-)")
    return name


def check(name: str, conf, ports, new: bool = False) -> None:
    """Raise ValueError (one line, naming the mirror) unless `conf` is a valid mirror of a
    bridge with `ports`. `new`: as add-mirror takes it, which must select something and
    have an output; a stored mirror may have lost either to del-port (then it is disabled)."""
    check_name(name)
    where = f"mirror {name}"
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = [k for k in conf if k not in KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key {shown(unknown[0])}")
    select_all = conf.get("select-all", False)
    if select_all is not True and "select-all" in conf:
        raise ValueError(f"{where}: select-all is stored only as true")
    selected = {}
    for key in ("select-src-port", "select-dst-port"):
        names = conf.get(key, [])
        if not isinstance(names, list) or (key in conf and not names):
            raise ValueError(f"{where}: {key} must be a non-empty list of port names")
        for p in names:
            if not isinstance(p, str) or p not in ports:
                raise ValueError(f"{where}: {key}: no port named {shown(p)} on the bridge")
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: {key}: a port is listed twice")
        if names:
            selected[key] = names
    if select_all and selected:
        raise ValueError(f"{where}: select-all selects every port: give no "
                         "select-src-port or select-dst-port with it")
    vlans = conf.get("select-vlan", [])
    if not isinstance(vlans, list) or ("select-vlan" in conf and not vlans):
        raise ValueError(f"{where}: select-vlan must be a non-empty list of VLANs")
    for v in vlans:
        if type(v) is not int or not 0 <= v <= 4094:
            raise ValueError(f"{where}: select-vlan: {shown(v)} is not a VLAN (0-4094)")
    if len(set(vlans)) != len(vlans):
        raise ValueError(f"{where}: select-vlan: a VLAN is listed twice")
    out, out_vlan = conf.get("output-port"), conf.get("output-vlan")
    if out is not None and out_vlan is not None:
        raise ValueError(f"{where}: give an output port or an output VLAN, not both")
    if out is not None:
        if not isinstance(out, str) or out not in ports:
            raise ValueError(f"{where}: output port: no port named {shown(out)} on the bridge")
        for key, names in selected.items():
            if out in names:
                raise ValueError(f"{where}: output port {out} is also selected ({key}): "
                                 "it carries copies only, nothing it sends or receives is mirrored")
    if out_vlan is not None and (type(out_vlan) is not int or not 1 <= out_vlan <= 4094):
        raise ValueError(f"{where}: output VLAN {shown(out_vlan)} is not a VLAN (1-4094)")
    if new:
        if out is None and out_vlan is None:
            raise ValueError(f"{where}: give an output port or an output VLAN")
        if not select_all and not selected:
            raise ValueError(f"{where}: selects nothing: give select-all, select-src-port "
                             "or select-dst-port")


def check_all(mirrors, ports) -> None:
    if not isinstance(mirrors, dict):
        raise ValueError("'mirrors' must be an object")
    if len(mirrors) > MAX_MIRRORS:
        raise ValueError(f"more than {MAX_MIRRORS} mirrors")
    for name, conf in mirrors.items():
        check(name, conf, ports)


def without_port(mirrors: dict, port: str) -> dict:
    """The mirrors once `port` is deleted: out of every selection; a mirror whose output
    it was keeps its selections and is disabled (no output), as OVS does."""
    out = {}
    for name, conf in mirrors.items():
        conf = dict(conf)
        for key in ("select-src-port", "select-dst-port"):
            if key in conf:
                kept = [p for p in conf[key] if p != port]
                if kept:
                    conf[key] = kept
                else:
                    del conf[key]
        if conf.get("output-port") == port:
            del conf["output-port"]
        out[name] = conf
    return out


def conf_from_request(values: dict) -> dict:
    """An ADD_MIRROR request's values -> the mirror's configuration as stored (check()s it)."""
    conf: dict = {}
    if values.get("select_all"):
        conf["select-all"] = True
    for attr, key in (("select_src_port", "select-src-port"), ("select_dst_port", "select-dst-port")):
        if values.get(attr):
            conf[key] = [item.get("port", "") for item in values[attr]]
    if values.get("select_vlan"):
        conf["select-vlan"] = parse_vlans(values["select_vlan"])
    if values.get("output") is not None:
        conf["output-port"] = values["output"]
    if values.get("output_vlan") is not None:
        conf["output-vlan"] = values["output_vlan"]
    return conf


def conf_to_values(conf: dict) -> dict:
    """A stored mirror -> GET_MIRROR values (the same attributes ADD_MIRROR takes)."""
    return {"select_all": conf.get("select-all", False),
            "select_src_port": [{"port": p} for p in conf.get("select-src-port", ())] or None,
            "select_dst_port": [{"port": p} for p in conf.get("select-dst-port", ())] or None,
            "select_vlan": vlan_text(conf["select-vlan"]) if "select-vlan" in conf else None,
            "output": conf.get("output-port"), "output_vlan": conf.get("output-vlan")}


def parse_vlans(text) -> list[int]:
    """'10,20-22' -> [10, 20, 21, 22] (set-port's trunks syntax)."""
    try:
        vlans = parse_trunks(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("trunks", "select-vlan", 1)) from None
    if not vlans:
        raise ValueError("select-vlan: no VLAN given")
    return vlans


def vlan_text(vlans) -> str:
    from .trace.explain import vlan_ranges  # the trace package imports the forwarding core

    return vlan_ranges(vlans)


def parse_output_vlan(text) -> int:
    try:
        vlan = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"output VLAN {shown(text)} is not a number") from None
    if not 1 <= vlan <= 4094:
        raise ValueError(f"output VLAN {vlan} is out of range (1-4094)")
    return vlan

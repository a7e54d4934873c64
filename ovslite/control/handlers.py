"""The control commands that are one Switch call each: configuration, dumps, the FDB.

Each handler takes a parsed Request and returns None (an ack), a dict (one
reply message, then the ack) or, for a dump command, an iterator of dicts.
A dump checks its request at once (ENOENT and friends come before any
message) and takes its snapshot as a list of object references (ports, MAC
entries, flow keys); each message's values are built only when the server
asks for it, i.e. as fast as the client reads (issue #12: values built up
front held ~1 KB per port per unread dump). Objects removed meanwhile are
left out. Refusals are SwitchError or ProtocolError with an errno and a
one-line message; anything else is a bug and becomes EIO in the server. Streaming commands (capture, monitor) live in
streams.py and monitor.py.

Settings travel as strings both ways (OVSLITE_ATTR_SETTINGS): requests carry
what the user typed (`tag=20`, `trunks=10,20-30`, `learning=off`, '' resets),
which the switch parses and validates; dumps carry the settings in effect that
differ from the defaults, in the same syntax, so they can be fed back.
"""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable, Iterator

import structlog

from .. import __version__, mirrorconf, portconfig
from ..db import BRIDGE_SETTINGS
from ..stpshow import flatten
from ..switch import SwitchError
from ..trace import vlan_ranges
from ..vnet import TPID_8021Q, format_mac, parse_mac
from . import messages as m

log = structlog.get_logger("ovslite.control")


def settings_text(settings: dict) -> dict[str, str]:
    """Typed port settings -> {key: text} for those that differ from the defaults."""
    out = {}
    for key in portconfig.KNOWN:
        value = settings.get(key)
        if value is None or value == [] or value == portconfig.DEFAULTS.get(key):
            continue
        if isinstance(value, bool):
            out[key] = "on" if value else "off"
        elif key == "trunks":
            out[key] = vlan_ranges(value)
        else:
            out[key] = str(value)
    return out


def bridge_settings_text(config: dict) -> dict[str, str]:
    """A bridge's configured set-br settings (not its static MACs) as text."""
    return {k: _setting_text(config[k]) for k in BRIDGE_SETTINGS if k in config}


def _setting_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _vlan(values: dict) -> int:
    vlan = values.get("vlan", 0)
    if not 0 <= vlan <= 4094:
        raise SwitchError(errno.EINVAL, f"VLAN {vlan} is out of range (0-4094)")
    return vlan


def _mac(values: dict) -> bytes:
    try:
        return parse_mac(values["mac"])
    except ValueError as exc:
        raise SwitchError(errno.EINVAL, str(exc)) from None


def _number(port) -> int:
    return port.number


def tunnel_remote(entry, now: float) -> str | None:
    """The remote a MAC entry's frames go to, for ports with several remotes (pinned
    or learned by the port itself: ovslite.netdev.tunnel), else None. `now` is
    time.monotonic(), the clock the tunnel ports learn with."""
    remote_of = getattr(getattr(entry.port, "netdev", None), "remote_of", None)
    return remote_of(entry.mac, now) if remote_of is not None else None


#: the last 4 bytes of a flow key (ovslite.flows): EtherType and 2 more, or TPID and TCI
_KEY_TAIL = struct.Struct("!HH")


def flow_values(in_port, key: bytes, flow, now: float) -> dict:
    """One cached flow as a GET_FLOW reply message."""
    ethertype, tci = _KEY_TAIL.unpack_from(key, 12)
    tagged = ethertype == TPID_8021Q  # then the EtherType after the tag is not in the key
    return {"bridge": in_port.bridge.name, "port": in_port.name,
            "dl_dst": format_mac(key[:6]), "dl_src": format_mac(key[6:12]),
            "vlan": tci & 0xFFF if tagged else None, "dl_type": None if tagged else ethertype,
            "packets": flow.packets, "bytes": flow.bytes,
            "used_ms": round(max(now - flow.used, 0.0) * 1000),
            "hops": [{"port": out.name, "peer": peer.name} for out, peer in flow.hops],
            "output": flow.out.name}


def stp_values(tree) -> dict:
    """One bridge's spanning tree as a GET_STP reply message."""
    shown = tree.show()
    ports = shown.pop("ports")
    numbers = {name: p.get("number", 0) for name, p in ports.items()}
    return {"bridge": tree.bridge.name, "info": flatten(shown),
            "ports": [{"port": name, "port_no": numbers[name], "info": flatten(ports[name])}
                      for name in sorted(ports, key=numbers.get)]}


class Handlers:
    def __init__(self, switch):
        self.switch = switch

    def table(self) -> dict[m.Cmd, Callable[[m.Request], object]]:
        C = m.Cmd
        return {
            C.GET_VERSION: self.get_version, C.ADD_BR: self.add_br, C.DEL_BR: self.del_br,
            C.GET_BR: self.get_br, C.SET_BR: self.set_br, C.ADD_PORT: self.add_port,
            C.DEL_PORT: self.del_port, C.GET_PORT: self.get_port, C.SET_PORT: self.set_port,
            C.GET_FDB: self.get_fdb, C.FDB_ADD: self.fdb_add, C.FDB_DEL: self.fdb_del,
            C.FDB_FLUSH: self.fdb_flush, C.FDB_STATS: self.fdb_stats, C.GET_FLOW: self.get_flow,
            C.GET_STP: self.get_stp,
            C.ADD_MIRROR: self.add_mirror, C.DEL_MIRROR: self.del_mirror,
            C.GET_MIRROR: self.get_mirror,
        }

    # -- configuration ----------------------------------------------------------
    def get_version(self, req: m.Request) -> dict:
        return {"version": __version__, "protocol": m.OVSLITE_PROTOCOL_VERSION}

    def add_br(self, req: m.Request) -> None:
        v = req.values
        self.switch.add_bridge(v["bridge"], may_exist=v.get("may_exist", False))

    def del_br(self, req: m.Request) -> None:
        v = req.values
        self.switch.del_bridge(v["bridge"], if_exists=v.get("if_exists", False))

    def set_br(self, req: m.Request) -> None:
        v = req.values
        self.switch.set_bridge(v["bridge"], v["settings"])

    def add_port(self, req: m.Request) -> None:
        v = req.values
        self.switch.add_port(v["bridge"], v["port"], v.get("type", "system"),
                             v.get("options", {}), may_exist=v.get("may_exist", False),
                             settings=v.get("settings") or None)

    def del_port(self, req: m.Request) -> None:
        v = req.values
        self.switch.del_port(v["port"], v.get("bridge"), if_exists=v.get("if_exists", False))

    def set_port(self, req: m.Request) -> None:
        v = req.values
        self.switch.port(v["port"], v.get("bridge"))  # ENOENT, also for the wrong bridge
        self.switch.set_port(v["port"], v["settings"])

    # -- dumps --------------------------------------------------------------------
    def _bridges(self, name: str | None) -> list:
        if name is not None:
            return [self.switch.bridge(name)]  # SwitchError ENOENT if absent
        return [self.switch.bridges[n] for n in sorted(self.switch.bridges)]

    def _options(self, port) -> dict[str, str]:
        try:
            return dict(self.switch.port_config(port).get("options", {}))
        except KeyError:  # being removed
            return {}

    def _port_summary(self, port) -> dict:
        return {"port": port.name, "type": port.type, "port_no": port.number, "up": port.up,
                "reason": None if port.up else port.reason, "blocked": port.stp_block,
                "options": self._options(port),
                "settings": settings_text(port.settings)}

    def _bridge_settings(self, name: str) -> dict[str, str]:
        conf = self.switch.desired["bridges"].get(name, {}).get("config", {})
        return bridge_settings_text(conf)

    def _present(self, br, port=None) -> bool:
        """Still part of the switch (a lazy dump skips what was removed meanwhile)."""
        if self.switch.bridges.get(br.name) is not br:
            return False
        return port is None or br.ports.get(port.name) is port

    def get_br(self, req: m.Request) -> Iterator[dict]:
        bridges = self._bridges(req.values.get("bridge"))
        return (
            {"bridge": br.name, "settings": self._bridge_settings(br.name),
             "ports": [self._port_summary(p) for p in sorted(br.ports.values(), key=_number)]}
            for br in bridges if self._present(br)
        )

    def get_port(self, req: m.Request) -> Iterator[dict]:
        name = req.values.get("port")
        ports = [(br, port) for br in self._bridges(req.values.get("bridge"))
                 for port in sorted(br.ports.values(), key=_number)
                 if name is None or port.name == name]
        if name is not None and not ports:
            self.switch.port(name, req.values.get("bridge"))  # raises the ENOENT
        return (self._port_detail(br, port) for br, port in ports if self._present(br, port))

    def _port_detail(self, br, port) -> dict:
        try:
            info = {str(k): str(v) for k, v in port.netdev.info().items()}
            early = {str(k): int(v) for k, v in port.netdev.drops().items() if v}
            per_remote = port.netdev.remote_stats() if hasattr(port.netdev, "remote_stats") else {}
        except Exception as exc:  # a provider bug must not hide every other port
            log.warning("netdev info failed", port=port.name, error=str(exc))
            info, early, per_remote = {}, {}, {}
        s = port.stats
        stats, drops = s.as_dict(), dict(s.drops)
        for reason, n in early.items():  # dropped by the provider, before the bridge
            drops[reason] = drops.get(reason, 0) + n
            stats["rx_dropped"] += n
        remotes = [{"remote": r, "stats": c} for r, c in per_remote.items()] or None
        return {**self._port_summary(port), "bridge": br.name, "info": info,
                "stats": {**stats, "drops": drops}, "remotes": remotes}

    # -- the MAC learning table ---------------------------------------------------------
    def get_fdb(self, req: m.Request) -> Iterator[dict]:
        """One message per entry, sorted; with PACKED, FDB_ENTRY records in batches,
        unsorted (the client sorts: 100k entries are ~0.1 s of sorting, kept off
        the forwarding loop)."""
        br = self.switch.bridge(req.values["bridge"])
        vlan = _vlan(req.values) if "vlan" in req.values else None
        entries = [e for e in br.macs.entries.values() if vlan is None or e.vlan == vlan]
        clock, aging = self.switch.datapath.clock, br.macs.aging
        if req.values.get("packed"):
            return self._fdb_packed(br.name, entries, clock, aging)
        now = clock()
        entries.sort(key=lambda e: (getattr(e.port, "number", 0), e.vlan, e.mac))
        return (
            {"port": getattr(e.port, "name", str(e.port)), "port_no": getattr(e.port, "number", 0),
             "vlan": e.vlan, "mac": format_mac(e.mac), "age": int(max(now - e.used, 0)),
             "static": e.static, "remote": tunnel_remote(e, time.monotonic())}
            for e in entries if e.static or now - e.used <= aging  # aged: absent already
        )

    @staticmethod
    def _fdb_packed(bridge: str, entries: list, clock, aging: float) -> Iterator[dict]:
        pack = m.FDB_ENTRY.pack
        names: dict = {}  # port -> (number, NUL-padded name), once per port
        for start in range(0, len(entries), m.FDB_ENTRY_BATCH):
            now, mono = clock(), time.monotonic()
            records, remotes = [], []
            for e in entries[start:start + m.FDB_ENTRY_BATCH]:
                age = now - e.used
                if not e.static and age > aging:
                    continue
                port = names.get(e.port)
                if port is None:
                    port = names[e.port] = (getattr(e.port, "number", 0),
                                            getattr(e.port, "name", str(e.port)).encode())
                remote = tunnel_remote(e, mono)
                if remote is not None:
                    remotes.append(m.pack_fdb_remote(len(records), remote))
                records.append(pack(port[0], int(max(age, 0)), e.vlan, e.static, e.mac, port[1]))
            yield {"bridge": bridge, "fdb_entries": b"".join(records),
                   "fdb_remotes": b"".join(remotes) or None}

    def fdb_add(self, req: m.Request) -> None:
        v = req.values
        self.switch.fdb_add(v["bridge"], _mac(v), v["port"], _vlan(v) if "vlan" in v else None,
                            v.get("remote"))

    def fdb_del(self, req: m.Request) -> None:
        v = req.values
        self.switch.fdb_del(v["bridge"], _mac(v), _vlan(v) if "vlan" in v else None)

    def fdb_flush(self, req: m.Request) -> dict:
        v = req.values
        count = self.switch.fdb_flush(v["bridge"], v.get("port"))
        return {"bridge": v["bridge"], "count": count}

    def fdb_stats(self, req: m.Request) -> dict:
        br = self.switch.bridge(req.values["bridge"])
        macs = br.macs
        st = macs.stats
        static = sum(1 for e in macs.entries.values() if e.static)
        counters = {"entries": len(macs), "static": static, "learned": st.learned,
                    "moved": st.moved, "aged": st.aged, "evicted": st.evicted}
        settings = bridge_settings_text({"mac-aging-time": float(macs.aging),
                                         "mac-table-size": int(macs.max_entries)})
        return {"bridge": br.name, "counters": counters, "settings": settings}

    # -- spanning tree ----------------------------------------------------------------
    def get_stp(self, req: m.Request) -> Iterator[dict]:
        """Per bridge with stp or rstp on: what ovs-appctl stp/show prints, as flat
        key/value text (stpshow.flatten)."""
        name = req.values.get("bridge")
        trees = self.switch.stp.trees
        if name is not None:
            self.switch.bridge(name)  # ENOENT if absent
            if name not in trees:
                raise SwitchError(errno.ENOENT, f"bridge {name} has neither stp nor rstp on")
            names = [name]
        else:
            names = sorted(trees)
        return (stp_values(trees[n]) for n in names if n in trees)
    # -- port mirrors (ovslite.mirror) ----------------------------------------------------
    def add_mirror(self, req: m.Request) -> None:
        v = req.values
        try:
            mirrorconf.check_name(v["mirror"])
        except ValueError as exc:
            raise SwitchError(errno.EINVAL, str(exc)) from None
        try:
            conf = mirrorconf.conf_from_request(v)
        except ValueError as exc:
            raise SwitchError(errno.EINVAL, f"mirror {v['mirror']}: {exc}") from None
        self.switch.add_mirror(v["bridge"], v["mirror"], conf)

    def del_mirror(self, req: m.Request) -> None:
        self.switch.del_mirror(req.values["bridge"], req.values["mirror"])

    def get_mirror(self, req: m.Request) -> Iterator[dict]:
        """One message per mirror, by bridge and name: its configuration and counters."""
        pairs = [(br, name) for br in self._bridges(req.values.get("bridge"))
                 for name in sorted(self.switch.desired["bridges"][br.name].get("mirrors", {}))]
        return (self._mirror(br, name) for br, name in pairs if self._present(br))

    def _mirror(self, br, name: str) -> dict:
        conf = self.switch.desired["bridges"].get(br.name, {}).get("mirrors", {}).get(name, {})
        running = br.mirrors.by_name.get(name) if br.mirrors is not None else None
        values = mirrorconf.conf_to_values(conf)
        values.update(bridge=br.name, mirror=name)
        if running is not None:
            values.update(packets=running.packets, bytes=running.bytes, dropped=running.dropped,
                          reason=running.reason or None)
        return values

    # -- the datapath's flow cache --------------------------------------------------------
    def get_flow(self, req: m.Request) -> Iterator[dict]:
        """The cache's counters (the whole datapath's), then its flows by ingress bridge,
        port number and key; only those entering on BRIDGE's ports if it is given."""
        name = req.values.get("bridge")
        only = self.switch.bridge(name) if name is not None else None  # ENOENT if absent
        datapath = self.switch.datapath
        cache = datapath.flows
        ports = [p for p in cache.by_port
                 if p.bridge is not None and (only is None or p.bridge is only)]
        keys = [(port, key) for port in sorted(ports, key=lambda p: (p.bridge.name, p.number))
                for key in sorted(cache.by_port[port])]
        counters = {"flows": len(cache), "hits": cache.hits, "misses": cache.misses}
        return self._flows(counters, keys, cache, datapath.clock)

    @staticmethod
    def _flows(counters: dict, keys: list, cache, clock) -> Iterator[dict]:
        yield {"counters": counters}
        for port, key in keys:
            flow = cache.by_port.get(port, {}).get(key)
            if flow is not None:  # else invalidated meanwhile
                yield flow_values(port, key, flow, clock())

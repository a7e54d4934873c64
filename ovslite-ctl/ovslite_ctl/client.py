"""A blocking client for ovslited's control socket.

One `Client` is one connection; requests are sent one at a time and each call
reads replies until the ack, the error or NLMSG_DONE with that sequence
number. Failures surface as ControlError subclasses carrying an errno and a
one-line message, so a caller (the CLI) never needs to catch socket errors.

Limits: not thread-safe; `timeout` bounds each wait for a datagram, not a
whole dump.
"""

from __future__ import annotations

import errno
import gc
import os
import socket

from ovslite.control import messages as m
from ovslite.control.messages import Cmd
from ovslite.stpshow import unflatten

DEFAULT_SOCKET = "/run/ovslite/ovslite.sock"


def default_socket() -> str:
    return os.environ.get("OVSLITE_SOCKET") or DEFAULT_SOCKET


class ControlError(Exception):
    """Base of every client failure: `errno` and a one-line message."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


class ConnectError(ControlError):
    """The daemon is not reachable."""


class DaemonError(ControlError):
    """The daemon refused the request (its errno and message)."""


class Client:
    def __init__(self, path: str | None = None, timeout: float | None = None):
        self.path = path or default_socket()
        self.timeout = timeout or None  # 0 means wait forever
        self.sock: socket.socket | None = None
        self.seq = 0

    def connect(self) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            hint = " (is ovslited running?)" if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) else ""
            reason = exc.strerror or str(exc)
            raise ConnectError(exc.errno or errno.EIO,
                               f"cannot connect to ovslited at {self.path}: {reason}{hint}") from None
        self.sock = sock
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Client:
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ------------------------------------------------------------
    def request(self, cmd: Cmd, values: dict | None = None, dump: bool = False) -> list[dict]:
        """Send one request; return the values of its reply messages ([] for an ack)."""
        if self.sock is None:
            self.connect()
        self.seq += 1
        data = m.encode_request(cmd, values, self.seq, dump)
        try:
            self.sock.send(data)
        except OSError as exc:
            raise self._transport_error(exc) from None
        results = []
        while True:
            reply = self._receive()
            if reply.seq != self.seq:
                continue  # a stray reply to an earlier, abandoned request
            if reply.kind == "error":
                raise DaemonError(reply.errno, reply.message or os.strerror(reply.errno))
            if reply.kind == "message":
                results.append(reply.values)  # a single reply is followed by the ack
            else:  # "ack" ends a command, "done" a dump
                return results

    def stream(self, cmd: Cmd, values: dict | None = None):
        """Send a streaming request; yield each message's values until NLMSG_DONE."""
        if self.sock is None:
            self.connect()
        self.seq += 1
        try:
            self.sock.send(m.encode_request(cmd, values, self.seq, dump=True))
        except OSError as exc:
            raise self._transport_error(exc) from None
        while True:
            reply = self._receive()
            if reply.seq != self.seq:
                continue
            if reply.kind == "error":
                raise DaemonError(reply.errno, reply.message or os.strerror(reply.errno))
            if reply.kind != "message":
                return
            yield reply.values

    def _receive(self) -> m.Reply:
        try:
            data = self.sock.recv(m.MAX_MSG_SIZE + 1)
        except OSError as exc:
            raise self._transport_error(exc) from None
        if not data:
            raise ControlError(errno.ECONNRESET, "ovslited closed the connection")
        try:
            return m.decode_reply(data)
        except m.ProtocolError as exc:
            raise ControlError(exc.errno, f"bad reply from ovslited: {exc}") from None

    def _transport_error(self, exc: OSError) -> ControlError:
        if isinstance(exc, TimeoutError):
            return ControlError(errno.ETIMEDOUT, f"no reply from ovslited within {self.timeout:g} s")
        return ControlError(exc.errno or errno.EIO, f"lost connection to ovslited: {exc.strerror or exc}")

    # -- commands -------------------------------------------------------------
    def version(self) -> dict:
        replies = self.request(Cmd.GET_VERSION)
        return replies[0] if replies else {}

    def add_bridge(self, name: str, may_exist: bool = False) -> None:
        self.request(Cmd.ADD_BR, {"bridge": name, "may_exist": may_exist})

    def del_bridge(self, name: str, if_exists: bool = False) -> None:
        self.request(Cmd.DEL_BR, {"bridge": name, "if_exists": if_exists})

    def bridges(self, name: str | None = None) -> list[dict]:
        """[{'name', 'settings', 'ports': [{'name', 'type', 'number', 'up', 'reason',
        'options', 'settings'}]}]"""
        return [
            {"name": r.get("bridge", ""), "settings": r.get("settings", {}),
             "ports": [_port(p) for p in r.get("ports", [])]}
            for r in self.request(Cmd.GET_BR, {"bridge": name}, dump=True)
        ]

    def stp(self, bridge: str | None = None) -> list[dict]:
        """Per bridge with stp or rstp on: {'bridge', 'mode', 'bridge', 'root', ...,
        'ports': {name: {...}}}, as the daemon's spanning tree shows it (stpshow)."""
        out = []
        for r in self.request(Cmd.GET_STP, {"bridge": bridge}, dump=True):
            tree = unflatten(r.get("info", {}))
            tree["name"] = r.get("bridge", "")
            tree["ports"] = {p.get("port", ""): unflatten(p.get("info", {}))
                             for p in r.get("ports", [])}
            out.append(tree)
        return out

    def set_bridge(self, name: str, settings: dict[str, str]) -> None:
        self.request(Cmd.SET_BR, {"bridge": name, "settings": settings})

    def add_port(self, bridge: str, name: str, type: str = "system",
                 options: dict[str, str] | None = None, may_exist: bool = False,
                 settings: dict[str, str] | None = None) -> None:
        self.request(Cmd.ADD_PORT, {"bridge": bridge, "port": name, "type": type,
                                    "options": options or None, "may_exist": may_exist,
                                    "settings": settings or None})

    def set_port(self, name: str, settings: dict[str, str], bridge: str | None = None) -> None:
        """Change switching settings: {'tag': '20', 'learning': 'off', 'mtu': ''}."""
        self.request(Cmd.SET_PORT, {"port": name, "settings": settings, "bridge": bridge})

    def del_port(self, name: str, bridge: str | None = None, if_exists: bool = False) -> None:
        self.request(Cmd.DEL_PORT, {"bridge": bridge, "port": name, "if_exists": if_exists})

    def ports(self, bridge: str | None = None, name: str | None = None) -> list[dict]:
        """Ports with 'bridge', 'info' and 'stats' (counters and 'drops' by reason)."""
        out = []
        for r in self.request(Cmd.GET_PORT, {"bridge": bridge, "port": name}, dump=True):
            port = _port(r)
            port.update(bridge=r.get("bridge", ""), info=r.get("info", {}),
                        stats=r.get("stats", {"drops": {}}))
            if r.get("remotes"):  # a tunnel port with several remotes
                port["remotes"] = [
                    {"remote": x.get("remote", ""),
                     **{k: x.get("stats", {}).get(k, 0)
                        for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}}
                    for x in r["remotes"]]
            out.append(port)
        return out

    def fdb(self, bridge: str, vlan: int | None = None) -> list[dict]:
        """[{'port', 'port_no', 'vlan', 'mac', 'age', 'static'[, 'remote']}] by port number,
        VLAN and MAC, of one VLAN if given ('remote': the tunnel remote the MAC is behind,
        on ports with several). Asked for packed (FDB_ENTRIES): ~1 us an entry, where
        a message per entry costs ~0.1 ms."""
        out = []
        # 100,000 new dicts, none in a cycle: the collector's passes over them would
        # cost as much as building them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for r in self.request(Cmd.GET_FDB, {"bridge": bridge, "vlan": vlan, "packed": True},
                                  dump=True):
                try:
                    out += m.unpack_fdb_entries(r.get("fdb_entries", b""),
                                                r.get("fdb_remotes", b""))
                except m.ProtocolError as exc:
                    raise ControlError(exc.errno, f"bad reply from ovslited: {exc}") from None
            out.sort(key=lambda e: (e["port_no"], e["vlan"], e["mac"]))
        finally:
            if collecting:
                gc.enable()
        return out

    def fdb_add(self, bridge: str, mac: str, port: str, vlan: int | None = None,
                remote: str | None = None) -> None:
        """A static entry; `mac` as 'aa:bb:cc:dd:ee:ff'; no `vlan`: the port's VLANs;
        `remote`: pinned to that remote of a tunnel port."""
        self.request(Cmd.FDB_ADD, {"bridge": bridge, "mac": mac, "port": port, "vlan": vlan,
                                   "remote": remote})

    def fdb_del(self, bridge: str, mac: str, vlan: int | None = None) -> None:
        """No `vlan`: MAC's entries in every VLAN."""
        self.request(Cmd.FDB_DEL, {"bridge": bridge, "mac": mac, "vlan": vlan})

    def fdb_flush(self, bridge: str, port: str | None = None) -> int:
        """Forget learned entries (of one port); how many there were."""
        replies = self.request(Cmd.FDB_FLUSH, {"bridge": bridge, "port": port})
        return replies[0].get("count", 0) if replies else 0

    def fdb_stats(self, bridge: str) -> dict:
        """{'entries', 'static', 'learned', 'moved', 'aged', 'evicted', 'max_entries',
        'aging_time'} (aging time in seconds)."""
        replies = self.request(Cmd.FDB_STATS, {"bridge": bridge})
        r = replies[0] if replies else {}
        out = {k: r.get("counters", {}).get(k, 0)
               for k in ("entries", "static", "learned", "moved", "aged", "evicted")}
        settings = r.get("settings", {})
        out["max_entries"] = int(settings.get("mac-table-size", 0))
        out["aging_time"] = float(settings.get("mac-aging-time", 0))
        return out

    def flows(self, bridge: str | None = None) -> dict:
        """The datapath's flow cache: {'stats': {'flows', 'hits', 'misses'} (the whole
        datapath's), 'flows': [{'bridge', 'in_port', 'dl_src', 'dl_dst', 'dl_vlan' (None
        if untagged), 'dl_type' (None if tagged), 'packets', 'bytes', 'used' (seconds ago),
        'hops' ([{'port', 'peer'}] patch pairs crossed), 'output'}]} (of BRIDGE's ports)."""
        stats = {"flows": 0, "hits": 0, "misses": 0}
        flows = []
        for r in self.request(Cmd.GET_FLOW, {"bridge": bridge}, dump=True):
            if "counters" in r:  # the first message: the cache's counters
                stats.update((k, r["counters"].get(k, 0)) for k in stats)
                continue
            flows.append({
                "bridge": r.get("bridge", ""), "in_port": r.get("port", ""),
                "dl_src": r.get("dl_src", ""), "dl_dst": r.get("dl_dst", ""),
                "dl_vlan": r.get("vlan"), "dl_type": r.get("dl_type"),
                "packets": r.get("packets", 0), "bytes": r.get("bytes", 0),
                "used": r.get("used_ms", 0) / 1000,
                "hops": [{"port": h.get("port", ""), "peer": h.get("peer", "")}
                         for h in r.get("hops", [])],
                "output": r.get("output", ""),
            })
        return {"stats": stats, "flows": flows}

    def add_mirror(self, bridge: str, name: str, select_all: bool = False,
                   src: list[str] | None = None, dst: list[str] | None = None,
                   vlans: str | None = None, output: str | None = None,
                   output_vlan: int | None = None) -> None:
        """A port mirror; `vlans` as '10,20-30'; exactly one of output and output_vlan."""
        self.request(Cmd.ADD_MIRROR, {
            "bridge": bridge, "mirror": name, "select_all": select_all,
            "select_src_port": [{"port": p} for p in src] if src else None,
            "select_dst_port": [{"port": p} for p in dst] if dst else None,
            "select_vlan": vlans or None, "output": output, "output_vlan": output_vlan})

    def del_mirror(self, bridge: str, name: str) -> None:
        self.request(Cmd.DEL_MIRROR, {"bridge": bridge, "mirror": name})

    def mirrors(self, bridge: str | None = None) -> list[dict]:
        """[{'bridge', 'name', 'select_all', 'select_src_port', 'select_dst_port' (names),
        'select_vlan' ('10,20-30' or ''), 'output_port', 'output_vlan' (None if not that
        kind), 'packets', 'bytes', 'dropped' (copies), 'disabled' (why, or '')}]"""
        return [{
            "bridge": r.get("bridge", ""), "name": r.get("mirror", ""),
            "select_all": bool(r.get("select_all")),
            "select_src_port": [p.get("port", "") for p in r.get("select_src_port", [])],
            "select_dst_port": [p.get("port", "") for p in r.get("select_dst_port", [])],
            "select_vlan": r.get("select_vlan", ""), "output_port": r.get("output"),
            "output_vlan": r.get("output_vlan"), "packets": r.get("packets", 0),
            "bytes": r.get("bytes", 0), "dropped": r.get("dropped", 0),
            "disabled": r.get("reason", ""),
        } for r in self.request(Cmd.GET_MIRROR, {"bridge": bridge}, dump=True)]

    def monitor(self, bridge: str | None = None, groups: int | None = None):
        """Yield events as they happen, one dict each: 'time' (ns since the epoch),
        'event', and its fields. The first is 'subscribed' (events flow from then on);
        batches of MAC events come out one event each. Runs until the connection ends."""
        for msg in self.stream(Cmd.MONITOR, {"bridge": bridge, "groups": groups}):
            blob = msg.pop("fdb_events", None)
            if blob is None:
                yield msg
                continue
            try:
                events = m.unpack_fdb_events(blob)
            except m.ProtocolError as exc:
                raise ControlError(exc.errno, f"bad reply from ovslited: {exc}") from None
            for event in events:
                yield {"bridge": msg.get("bridge", ""), **event}


def _port(r: dict) -> dict:
    up = bool(r.get("up"))
    return {"name": r.get("port", ""), "type": r.get("type", ""), "number": r.get("port_no", 0),
            "up": up, "reason": "" if up else r.get("reason", ""), "options": r.get("options", {}),
            "settings": r.get("settings", {}),
            **({"blocked": r["blocked"]} if r.get("blocked") else {})}

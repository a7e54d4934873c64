"""MONITOR: switch and MAC learning events, streamed to clients as they happen.

A monitor is a stream (see streams.py): after a first `subscribed` message,
one NLM_F_MULTI message per event (MAC events in batches) until the client
closes the connection. Each monitor asks for "multicast groups"
(messages.McGroup: CONFIG, STATE, FDB; all by default) and optionally one
bridge.

Cost model, for the dataplane's sake:
- Nothing is hooked while no monitor runs: the hub adds its switch listener
  and sets a bridge's `macs.listener` only while some monitor wants that
  bridge's FDB events, and removes them when the last such monitor ends.
- A MAC event (learned, moved, aged, evicted; up to 100k a second in a flood)
  costs one tuple appended to each interested monitor's deque (~0.3 us).
  Nothing is encoded then; the monitor's pump encodes on later loop passes, at
  most PUMP_BUDGET messages per pass and only when the connection has nothing
  queued, i.e. as fast as the client reads. MAC events go out as packed
  records (messages.FDB_EVENT), up to FDB_BATCH per message; they wait up to
  COALESCE seconds for company, since a message costs ~85 us however small.
- A monitor holds at most `limit` events. Beyond that, events are counted,
  not queued; the count goes out as a `lost` event in the place of the gap
  (as soon as an event fits again, or when the queue drains).
Switch events (add/remove/state/settings) are rare and become one message each.
"""

from __future__ import annotations

import errno
import time
from collections import deque

import structlog

from ..switch import SwitchError
from . import messages as m
from .handlers import settings_text

log = structlog.get_logger("ovslite.control")

#: events a monitor may have waiting; beyond that they are counted as lost
QUEUE_LIMIT = 16384
#: MAC events per message (52 bytes each, well under MAX_MSG_SIZE)
FDB_BATCH = 1024
#: messages one monitor encodes per loop pass before letting forwarding run (a full
#: FDB batch costs ~0.6 ms)
PUMP_BUDGET = 2
#: seconds MAC events may wait to share a message; in a flood a batch fills sooner
COALESCE = 0.01

CONFIG, STATE, FDB = m.McGroup.CONFIG, m.McGroup.STATE, m.McGroup.FDB
#: switch event -> the group that receives it
EVENT_GROUPS = {"bridge-added": CONFIG, "bridge-removed": CONFIG, "port-added": CONFIG,
                "port-removed": CONFIG, "port-settings": CONFIG, "port-state": STATE,
                "mirror-added": CONFIG, "mirror-removed": CONFIG,
                "stp-state": STATE, "stp-role": STATE, "topology-change": STATE}
MAC_KINDS = {name: code for code, name in m.FDB_EVENT_KINDS.items()}
# Queue items: (kind, time_ns, ...). kind > 0 is a MAC event (MAC_KINDS):
# (kind, t, bridge, vlan, mac, port name, old port name or ""); SWITCH: (SWITCH, t,
# event, values); LOST: (LOST, t, count).
SWITCH, LOST = 0, -1


class MonitorStream:
    def __init__(self, server, conn, req: m.Request, seq: int, pid: int):
        groups = req.values.get("groups", m.MCGRP_ALL)
        if not groups or groups & ~m.MCGRP_ALL:
            raise SwitchError(errno.EINVAL, f"invalid monitor groups {groups:#x} "
                              "(a mask of 1 config, 2 state, 4 fdb)")
        self.bridge = req.values.get("bridge")
        if self.bridge is not None:
            server.switch.bridge(self.bridge)  # ENOENT if absent
        self.groups = groups
        self.hub: MonitorHub = server.monitors
        self.conn = conn
        self.seq, self.pid = seq, pid
        self.limit = self.hub.limit
        self.queue: deque = deque()
        self.lost = 0
        self.finished = False
        self._scheduled = False
        self._pumping = False
        self._loop = server.loop
        conn.on_close.append(self.stop)
        conn.on_drained.append(self.pump)
        self.hub.add(self)
        conn.send_event(self._encode({"event": "subscribed", "time": time.time_ns(),
                                      "groups": groups, "bridge": self.bridge}))
        log.info("monitor started", groups=groups, bridge=self.bridge)

    def wants(self, group: int, bridge: str | None) -> bool:
        return bool(self.groups & group) and (self.bridge is None or self.bridge == bridge)

    def push(self, item: tuple) -> None:
        """Queue one event (called from the dataplane for MAC events: keep it cheap)."""
        q = self.queue
        if len(q) >= self.limit:
            self.lost += 1
            return
        if self.lost:
            q.append((LOST, item[1], self.lost))
            self.lost = 0
        q.append(item)
        if not self._scheduled:
            self._scheduled = True
            if item[0] > 0:  # a MAC event: let a few more join it
                self._loop.call_later(COALESCE, self.pump)
            else:
                self._loop.call_soon(self.pump)

    def pump(self, *_) -> None:
        """Encode and send what the client can take now, PUMP_BUDGET messages at most."""
        self._scheduled = False
        if self.finished or self._pumping:
            return  # re-entered from send_event -> on_drained: the outer loop goes on
        conn = self.conn
        self._pumping = True
        try:
            for _ in range(PUMP_BUDGET):
                if conn.queue or conn.closed:
                    return  # on_drained calls us again once the client has read
                if not self.queue:
                    if not self.lost:
                        return
                    self.queue.append((LOST, time.time_ns(), self.lost))
                    self.lost = 0
                conn.send_event(self._next_message())
        finally:
            self._pumping = False
        if (self.queue or self.lost) and not conn.queue and not self._scheduled:
            self._scheduled = True  # budget spent: go on after the next forwarding pass
            self._loop.call_soon(self.pump)

    def _next_message(self) -> bytes:
        q = self.queue
        item = q.popleft()
        kind = item[0]
        if kind == SWITCH:
            values = {"event": item[2], "time": item[1], **item[3]}
        elif kind == LOST:
            values = {"event": "lost", "time": item[1], "dropped": item[2]}
        else:
            bridge = item[2]
            pack = m.FDB_EVENT.pack
            records = []
            while True:
                kind, t, _, vlan, mac, port, old = item
                records.append(pack(t, vlan, kind, bytes(mac), port.encode(), old.encode()))
                if not q or len(records) >= FDB_BATCH or q[0][0] <= 0 or q[0][2] != bridge:
                    break
                item = q.popleft()
            values = {"event": "fdb", "bridge": bridge, "fdb_events": b"".join(records)}
        return self._encode(values)

    def _encode(self, values: dict) -> bytes:
        return m.encode_reply(m.Cmd.MONITOR, values, self.seq, self.pid, multi=True)

    def stop(self, *_) -> None:
        if self.finished:
            return
        self.finished = True
        self.queue.clear()
        self.conn.forget(self.stop, self.pump)
        self.hub.remove(self)
        log.info("monitor stopped", lost=self.lost)


class MonitorHub:
    """The running monitors of one server, and the listeners they need."""

    def __init__(self, switch, loop, limit: int = QUEUE_LIMIT):
        self.switch = switch
        self.loop = loop
        self.limit = limit
        self.monitors: list[MonitorStream] = []
        #: bridges whose MAC table listener we set -> that listener
        self._hooked: dict = {}

    def add(self, mon: MonitorStream) -> None:
        if not self.monitors:
            self.switch.listeners.append(self._on_switch_event)
        self.monitors.append(mon)
        self._rehook()

    def remove(self, mon: MonitorStream) -> None:
        if mon in self.monitors:
            self.monitors.remove(mon)
        if not self.monitors and self._on_switch_event in self.switch.listeners:
            self.switch.listeners.remove(self._on_switch_event)
        self._rehook()

    # -- MAC table listeners --------------------------------------------------------
    def _rehook(self) -> None:
        live = list(self.switch.bridges.values())
        for br in [b for b in self._hooked if not any(b is x for x in live)]:
            self._unhook(br)
        for br in live:
            self._hook(br)

    def _hook(self, br) -> None:
        """(Re)set `br`'s MAC listener for the monitors that want its FDB events, if any."""
        self._unhook(br)
        targets = tuple(mon for mon in self.monitors if mon.wants(FDB, br.name))
        if not targets:
            return
        if br.macs.listener is not None:
            log.warning("MAC table listener already taken; no FDB events", bridge=br.name)
            return
        listener = _mac_listener(br.name, targets)
        br.macs.listener = listener
        self._hooked[br] = listener

    def _unhook(self, br) -> None:
        listener = self._hooked.pop(br, None)
        if listener is not None and br.macs.listener is listener:
            br.macs.listener = None

    # -- switch events ----------------------------------------------------------------
    def _on_switch_event(self, event: str, **fields) -> None:
        try:
            if event in ("bridge-added", "bridge-removed"):
                self._rehook()
            group = EVENT_GROUPS.get(event)
            bridge = fields.get("bridge")
            targets = [mon for mon in self.monitors if group and mon.wants(group, bridge)]
            if targets:
                item = (SWITCH, time.time_ns(), event, self._values(event, fields))
                for mon in targets:
                    mon.push(item)
        except Exception:  # a monitor bug must never break a switch change
            log.exception("monitor event failed", event=event)

    def _values(self, event: str, fields: dict) -> dict:
        values = {"bridge": fields.get("bridge")}
        if event.startswith(("stp-", "topology-")):  # ovslite.stpport: old and new, as text
            return {**values, **{k: fields[k] for k in ("port", "old", "new") if k in fields}}
        if "mirror" in fields:
            values["mirror"] = fields["mirror"]
        name = fields.get("port")
        if name is None:
            return values
        values["port"] = name
        port = self.switch.ports.get(name)
        if event == "port-state":
            up = fields.get("state") == "up"
            values.update(up=up, reason=None if up else fields.get("reason") or "")
        elif port is None:
            pass  # removed
        elif event == "port-added":
            values.update(type=port.type, port_no=port.number)
        elif event == "port-settings":
            values["settings"] = settings_text(port.settings)
        return values


def _mac_listener(bridge: str, targets: tuple):
    """MacTable.listener for one bridge: a tuple per event into each monitor's queue."""
    kinds, now = MAC_KINDS, time.time_ns
    # Names, not Port objects: a tuple of strings, ints and bytes is untracked by the
    # garbage collector, which would otherwise walk every queued event (3x the cost).
    if len(targets) == 1:
        push = targets[0].push

        def one(kind, entry, old_port):
            push((kinds[kind], now(), bridge, entry.vlan, entry.mac, entry.port.name,
                  "" if old_port is None else old_port.name))

        return one

    def many(kind, entry, old_port):
        item = (kinds[kind], now(), bridge, entry.vlan, entry.mac, entry.port.name,
                "" if old_port is None else old_port.name)
        for mon in targets:
            mon.push(item)

    return many

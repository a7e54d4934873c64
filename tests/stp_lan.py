"""A fake LAN for the spanning tree unit tests: bridges, links and a fake clock.

Each `Segment` joins two or more (bridge, port) ends; a frame sent on one end
reaches every other end at once while the segment is up. `run` advances the
clock in small steps, ticks every bridge and delivers what they send until
nothing is left to send at that instant.
"""

from __future__ import annotations

from ovslite.stp import BridgeParams, PortParams, SpanningTree


class Segment:
    def __init__(self, ends):
        self.ends = ends  # [(bridge name, port name)]
        self.up = True


class Lan:
    def __init__(self, mode="stp", **params):
        self.mode = mode
        self.params = params
        self.now = 0.0
        self.bridges: dict[str, SpanningTree] = {}
        self.segments: list[Segment] = []
        self.events: dict[str, list[dict]] = {}
        self.sent: dict[tuple[str, str], list[bytes]] = {}

    def bridge(self, name, mac_last, priority=32768, mode=None, **params):
        mac = bytes([0x02, 0, 0, 0, 0, mac_last])
        merged = {**self.params, **params}
        stp = SpanningTree(mode or self.mode, mac, BridgeParams(priority=priority, **merged),
                           self.now)
        self.bridges[name] = stp
        self.events[name] = []
        return stp

    def link(self, *ends, speed=1000, **port_params):
        """Join ports ("bridge:port" strings), adding them to their bridges."""
        segment = Segment([])
        self.segments.append(segment)
        for end in ends:
            self.attach(segment, end, speed, **port_params)
        return segment

    def attach(self, segment, end, speed=1000, **port_params):
        """Add port `end` ("bridge:port") to its bridge and plug it into `segment`."""
        bname, pname = end.split(":")
        stp = self.bridges[bname]
        number = len(stp.ports()) + 1
        mac = bytes([0x0a, number, 0, 0, 0, ord(bname[-1])])
        stp.add_port(pname, number, mac, PortParams(**port_params), True, speed, self.now)
        segment.ends.append((bname, pname))

    def set_up(self, segment, up):
        segment.up = up
        for bname, pname in segment.ends:
            self.bridges[bname].set_link(pname, up, self.now)

    def segment_of(self, bname, pname):
        for segment in self.segments:
            if (bname, pname) in segment.ends:
                return segment
        return None

    def deliver(self, bname, frames):
        for pname, frame in frames:
            self.sent.setdefault((bname, pname), []).append(frame)
            segment = self.segment_of(bname, pname)
            if segment is None or not segment.up:
                continue
            for other in segment.ends:
                if other != (bname, pname):
                    self.bridges[other[0]].receive(other[1], frame, self.now)

    def settle(self):
        for _ in range(50):
            busy = False
            for bname, stp in self.bridges.items():
                frames = stp.tick(self.now)
                self.events[bname] += stp.take_events()
                if frames:
                    busy = True
                    self.deliver(bname, frames)
            if not busy:
                return
        raise AssertionError("BPDUs still flowing after 50 rounds at one instant")

    def run(self, seconds, step=0.1):
        start = self.now
        self.settle()
        for k in range(1, round(seconds / step) + 1):
            self.now = start + k * step
            self.settle()

    def run_until(self, condition, limit, step=0.1):
        """Advance until condition() holds; the time it took (AssertionError past limit)."""
        start = self.now
        self.settle()
        k = 0
        while not condition():
            if self.now - start > limit:
                raise AssertionError(f"not converged within {limit} s")
            k += 1
            self.now = start + k * step
            self.settle()
        return self.now - start

    def blocked(self):
        """The (bridge, port) ends that do not forward."""
        return sorted((b, p) for b, stp in self.bridges.items() for p in stp.ports()
                      if not stp.forwarding(p))

    def root_of(self, bname):
        return self.bridges[bname].show()["root"]["id"]

    def tree_ready(self):
        """Every port either forwarding or blocked in a stable role, all agree on the root."""
        roots = {self.root_of(b) for b in self.bridges}
        if len(roots) != 1:
            return False
        return all(stp.state(p) in ("forwarding", "blocking", "discarding", "disabled")
                   for stp in self.bridges.values() for p in stp.ports())

    def flooded_copies(self, origin):
        """Walk a broadcast from bridge `origin` through forwarding ports: copies per bridge.

        Stops at 10 per bridge, which can only be reached around a loop."""
        copies = {b: 0 for b in self.bridges}
        queue = [(origin, None)]
        while queue:
            bname, in_port = queue.pop()
            copies[bname] += 1
            if copies[bname] > 10:
                break
            stp = self.bridges[bname]
            for pname in stp.ports():
                if pname == in_port or not stp.forwarding(pname):
                    continue
                segment = self.segment_of(bname, pname)
                if not segment.up:
                    continue
                for other_b, other_p in segment.ends:
                    if (other_b, other_p) != (bname, pname) and \
                            self.bridges[other_b].forwarding(other_p):
                        queue.append((other_b, other_p))
        return copies

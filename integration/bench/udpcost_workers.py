"""The workers of integration.bench.udpcost: each runs inside one namespace.

udpcost starts them as `ip netns exec NS python -m integration.bench.udpcost
--worker NAME --args JSON`; a worker prints one JSON line (some print "ready"
first, once their socket is bound) and exits. Rates are wall-clock; CPU is the
worker's own user+sys time (getrusage), the steadier figure on a shared host.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_NO_CHECK = 11
IPPROTO_GRE = 47
PAYLOAD = 1450
UDP_MAX_PAYLOAD = 65507
A_IP, B_IP = "192.168.77.1", "192.168.77.2"
PORT = 9000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _udp(bind_port: int | None = None, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE: root may exceed rmem_max
    if bind_port is not None:
        sock.bind(("0.0.0.0", bind_port))
    return sock


def worker_hold(seconds: float) -> dict:
    """Keep PORT bound (never read: datagrams beyond the buffer drop, no ICMP errors).

    UDP_GRO on, so a UDP_SEGMENT super-datagram that crossed the veth whole is
    queued (or dropped) whole: without it the kernel would split it into
    datagrams at this socket, in the sender's softirq, and charge the sender.
    """
    sock = _udp(PORT)
    sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    print("ready", flush=True)
    time.sleep(seconds)
    sock.close()
    return {}


def worker_send(seconds: float, batch: int, dst: str = B_IP) -> dict:
    """Send PAYLOAD-byte datagrams for `seconds`: batch 1 = one per sendto, else UDP_SEGMENT."""
    # Unconnected, as a tunnel port's one socket sending to many remotes (and so
    # no ECONNREFUSED when the receiver goes first).
    sock = _udp()
    addr = (dst, PORT)
    buf = os.urandom(PAYLOAD * batch)
    cmsg = [(SOL_UDP, UDP_SEGMENT, PAYLOAD.to_bytes(2, sys.byteorder))]
    calls, cpu0, t0 = 0, _cpu(), time.monotonic()
    deadline = t0 + seconds
    while True:
        for _ in range(64):
            if batch == 1:
                sock.sendto(buf, addr)
            else:
                sock.sendmsg([buf], cmsg, 0, addr)
        calls += 64
        now = time.monotonic()
        if now >= deadline:
            break
    wall, cpu = now - t0, _cpu() - cpu0
    n = calls * batch
    return {"datagrams": n, "calls": calls, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "datagrams_per_s": round(n / wall), "gbit_per_s": round(n * PAYLOAD * 8 / wall / 1e9, 3),
            "cpu_ns_per_datagram": round(cpu / n * 1e9)}


def worker_segmax(size: int = 72) -> dict:
    """How many datagrams one UDP_SEGMENT call may carry (UDP_MAX_SEGMENTS), for
    small frames where the 64 KB limit is not what stops a batch."""
    sock = _udp()
    cmsg = [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
    result = {}
    for n in (64, 65, 128, 129, 256):
        try:
            sock.sendmsg([bytes(size * n)], cmsg, 0, (B_IP, PORT))
            result[str(n)] = "ok"
        except OSError as exc:
            result[str(n)] = exc.strerror
    return result


def worker_recv(seconds: float, gro: bool) -> dict:
    """Count datagrams arriving for `seconds` after the first one."""
    sock = _udp(PORT, rcvbuf=8 << 20)
    if gro:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    sock.settimeout(10)
    print("ready", flush=True)
    sock.recv(65535)  # the sender has started
    n = reads = 0
    ancsize = socket.CMSG_SPACE(4)
    cpu0, t0 = _cpu(), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        for _ in range(64):
            if gro:
                data, anc, _, _ = sock.recvmsg(65535, ancsize)
                size = int.from_bytes(anc[0][2], sys.byteorder) if anc else len(data)
                n += -(-len(data) // size)
            else:
                sock.recv(65535)
                n += 1
            reads += 1
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return {"datagrams": n, "reads": reads, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "datagrams_per_s": round(n / wall), "datagrams_per_read": round(n / reads, 1),
            "cpu_ns_per_datagram": round(cpu / n * 1e9)}


INNER_MSS = 1410  # inner MTU 1450 (1500 - 50) - 20 IP - 20 TCP
GSO_PAYLOAD = 65000


def _gso_packet(payload_len: int = GSO_PAYLOAD) -> bytes:
    """vnet header + Ethernet/IPv4/TCP frame of `payload_len` bytes, as a TSO frame arrives
    (checksum partial: the field holds the pseudo-header sum)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from ovslite.tunnel.checksum import fold, pseudo_header_sum
    from ovslite.vnet import VNET_HDR
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:99")
                  / IP(src="10.200.0.1", dst="10.200.0.99", id=1000, flags="DF")
                  / TCP(sport=40000, dport=5201, seq=1, flags="PA") / (b"x" * payload_len))
    seed = fold(pseudo_header_sum(frame[26:30], frame[30:34], 6, len(frame) - 34))
    frame = frame[:50] + seed.to_bytes(2, "big") + frame[52:]
    return VNET_HDR.pack(1, 1, 14 + 20 + 20, INNER_MSS, 34, 16) + frame


def _numpy_sums(payload, mss: int) -> list[int]:
    """The 16-bit word sums of every mss-sized chunk in one numpy call (mss even)."""
    import numpy as np
    n = len(payload) // mss
    words = np.frombuffer(payload, dtype=">u2", count=n * mss // 2).reshape(n, mss // 2)
    sums = words.sum(axis=1, dtype=np.uint64).tolist()
    tail = payload[n * mss:]
    if tail:
        sums.append(int.from_bytes(tail, "big") << (8 * (len(tail) & 1)))
    return sums


def worker_gso(seconds: float, mode: str, inner_mtu: int = 1450) -> dict:
    """64 KB TCP GSO frames made ready for a VXLAN tunnel, one of three ways:
    segment    ovslite.tunnel.segment.wire_frames alone (no I/O)
    send       the same + VXLAN header + UDP_SEGMENT sendmsg (up to 64 KB a call)
    pysums     only the per-segment payload sums as segment() takes them
               (int.from_bytes and % 0xFFFF per segment)
    sums       the same sums with numpy (what a numpy checksum path would cost)
    sendonly   the sends of `send` alone (segments made once, before the clock)
    """
    from ovslite.tunnel.headers import udp_source_port, vxlan_header
    from ovslite.tunnel.segment import wire_frames
    packet = _gso_packet()
    header = vxlan_header(100)
    sock = _udp()
    sock.bind(("0.0.0.0", udp_source_port(packet, 10)))
    addr = (B_IP, PORT)
    payload = memoryview(packet)[10 + 54:]
    frames = sends = segments = 0
    cpu0, t0 = _cpu(), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        if mode == "sendonly":  # the sends of "send" without the segmenting
            if not segments:
                out = wire_frames(packet, inner_mtu, header)
                segments = len(out)
        elif mode == "sums":
            segments = len(_numpy_sums(payload, INNER_MSS))
        elif mode == "pysums":
            segments = len([int.from_bytes(payload[i:i + INNER_MSS], "big") % 0xFFFF
                            for i in range(0, len(payload), INNER_MSS)])
        else:
            out = wire_frames(packet, inner_mtu, header if mode == "send" else b"")
            segments = len(out)
        if mode in ("send", "sendonly"):  # every datagram the same size but the last: UDP_SEGMENT's rule
            size = len(out[0])
            per_call = UDP_MAX_PAYLOAD // size
            cmsg = [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
            for i in range(0, len(out), per_call):
                sock.sendmsg([b"".join(out[i:i + per_call])], cmsg, 0, addr)
                sends += 1
        frames += 1
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return {"gso_frames": frames, "segments_per_frame": segments, "sendmsg_calls": sends,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "gso_frames_per_s": round(frames / wall),
            "inner_gbit_per_s": round(frames * GSO_PAYLOAD * 8 / wall / 1e9, 3),
            "cpu_us_per_gso_frame": round(cpu / frames * 1e6, 1),
            "inner_gbit_per_cpu_s": round(frames * GSO_PAYLOAD * 8 / cpu / 1e9, 3)}


def worker_kernel_gso(seconds: float, device: str) -> dict:
    """Write 64 KB GSO frames (vnet header) into kernel vxlan `device` with AF_PACKET:
    the kernel encapsulates and segments them (the path that skips Python segmentation)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    sock.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR
    sock.bind((device, 0))
    packet = _gso_packet()
    frames = 0
    cpu0, t0 = _cpu(), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        for _ in range(16):
            sock.send(packet)
        frames += 16
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return {"gso_frames": frames, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "gso_frames_per_s": round(frames / wall),
            "inner_gbit_per_s": round(frames * GSO_PAYLOAD * 8 / wall / 1e9, 3),
            "cpu_us_per_gso_frame": round(cpu / frames * 1e6, 1),
            "inner_gbit_per_cpu_s": round(frames * GSO_PAYLOAD * 8 / cpu / 1e9, 3)}


def worker_tunnel_check(kind: str = "vxlan", zero_csum: bool = False, key: int = 100,
                        tries: int = 3) -> dict:
    """ARP then ping 10.200.0.2 behind B's tunnel endpoint, from A with ovslite's headers:
    vxlan/geneve over UDP sockets (each flow its own source port, replies to the
    well-known port), gre over a raw IPPROTO_GRE socket (csum only if zero_csum is False)."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    from ovslite.tunnel import headers as h
    port = {"vxlan": 4789, "geneve": 6081}.get(kind)
    parse = {"vxlan": h.parse_vxlan, "geneve": h.parse_geneve, "gre": h.parse_gre}[kind]
    mac = "02:00:00:00:00:01"
    if kind == "gre":
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    else:
        sock = _udp()
        sock.bind((A_IP, port))
    sock.settimeout(1)

    def send(frame: bytes) -> None:
        if kind == "gre":
            sock.sendto(h.gre_header(key, not zero_csum, frame) + frame, (B_IP, 0))
            return
        out = _udp()
        if zero_csum:
            out.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        out.bind((A_IP, h.udp_source_port(frame)))
        header = h.vxlan_header(key) if kind == "vxlan" else h.geneve_header(key)
        out.sendto(header + frame, (B_IP, port))
        out.close()

    def exchange(frame: bytes, want):
        # a few tries: an endpoint may drop the first frames while it resolves its way back
        for _ in range(tries):
            send(frame)
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                try:
                    data, addr = sock.recvfrom(65535)
                except TimeoutError:
                    break
                if kind == "gre":
                    data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets include the IP header
                parsed = parse(data)
                if isinstance(parsed, str):
                    continue
                got_key, offset, _ = parsed
                inner = Ether(data[offset:])
                if want(inner):
                    return got_key, addr, inner
        return None

    arp = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac, psrc="10.200.0.1", pdst="10.200.0.2")
    got = exchange(bytes(arp), lambda f: ARP in f and f[ARP].op == 2)
    result = {"outer_checksum": "zero" if zero_csum else "computed", "arp_reply": bool(got)}
    if got:
        got_key, addr, reply = got
        result.update(arp_key=got_key, arp_from=f"{addr[0]}:{addr[1]}")
        ping = Ether(src=mac, dst=reply[ARP].hwsrc) / IP(src="10.200.0.1", dst="10.200.0.2") / ICMP(
            id=77, seq=1) / (b"p" * 56)
        got = exchange(bytes(ping), lambda f: ICMP in f and f[ICMP].type == 0 and f[ICMP].id == 77)
        result["echo_reply"] = bool(got)
        if got:
            result.update(echo_key=got[0], echo_from=f"{got[1][0]}:{got[1][1]}")
    return result


def worker_gre(role: str) -> dict:
    """A sends GRE (key 7, checksum) with a frame to B; B checks it and sends it back."""
    from ovslite.tunnel.headers import gre_header, parse_gre
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    sock.settimeout(5)
    inner = bytes(range(64))
    if role == "echo":
        print("ready", flush=True)
        data, addr = sock.recvfrom(65535)
        ihl = (data[0] & 0x0F) * 4  # a raw IPv4 socket hands over the IP header too
        parsed = parse_gre(data[ihl:])
        if isinstance(parsed, str):
            return {"received": True, "drop": parsed}
        key, offset, _ = parsed
        frame = data[ihl + offset:]
        sock.sendto(gre_header(key, True, frame) + frame, (addr[0], 0))
        return {"received": True, "key": key, "from": addr[0], "inner_ok": frame == inner}
    sock.sendto(gre_header(7, True, inner) + inner, (B_IP, 0))
    try:
        data, addr = sock.recvfrom(65535)
    except TimeoutError:
        return {"echo": False}
    ihl = (data[0] & 0x0F) * 4
    parsed = parse_gre(data[ihl:])
    return {"echo": True, "parsed": parsed if isinstance(parsed, str) else list(parsed),
            "inner_ok": not isinstance(parsed, str) and data[ihl + parsed[1]:] == inner}


def worker_headers(rounds: int = 200_000) -> dict:
    """CPU per call of the per-frame header work (no I/O): build, parse, source port."""
    from ovslite.tunnel import headers as h
    frame = _gso_packet(18)[10:]  # a 72-byte Ethernet/IPv4/TCP frame
    vx, gn, gr = h.vxlan_header(100) + frame, h.geneve_header(100) + frame, h.gre_header(7) + frame
    cases = {
        "vxlan_header": lambda: h.vxlan_header(100),
        "parse_vxlan": lambda: h.parse_vxlan(vx),
        "geneve_header": lambda: h.geneve_header(100),
        "parse_geneve": lambda: h.parse_geneve(gn),
        "gre_header": lambda: h.gre_header(7),
        "gre_header_csum": lambda: h.gre_header(7, True, frame),
        "parse_gre": lambda: h.parse_gre(gr),
        "udp_source_port": lambda: h.udp_source_port(frame),
    }
    out = {}
    for name, fn in cases.items():
        cpu0 = _cpu()
        for _ in range(rounds):
            fn()
        out[name + "_ns"] = round((_cpu() - cpu0) / rounds * 1e9)
    return out


WORKERS = {"hold": worker_hold, "send": worker_send, "segmax": worker_segmax, "recv": worker_recv, "gso": worker_gso,
           "kgso": worker_kernel_gso, "headers": worker_headers, "check": worker_tunnel_check, "gre": worker_gre}



"""The tunnel providers' logic that needs no sockets: option checks as add-port
sees them, receive dispatch and drop reasons, the vnet header given to
decapsulated frames, state from the route lookup, and the too-big limit."""

import socket

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from ovslite import confcheck
from ovslite.bridge import Port
from ovslite.datapath import Datapath
from ovslite.netdev import NetdevError, netdev_class
from ovslite.netdev.vxlan import VxlanNetdev
from ovslite.tunnel.checksum import fold, ones_sum, pseudo_header_sum
from ovslite.tunnel.endpoint import Endpoint, received_header
from ovslite.tunnel.headers import gre_header, vxlan_header
from ovslite.tunnel.options import parse_options
from ovslite.tunnel.remotes import RemoteMap
from ovslite.vnet import VNET_HDR, VNET_HDR_LEN, ZERO_HDR

REMOTE = "192.168.50.2"


# -- options, as `add-port` checks them before anything is applied -------------------

@pytest.mark.parametrize(("type_", "options", "needle"), [
    ("vxlan", {"remote_ip": "abc"}, "remote_ip: 'abc' is not an IP address"),
    ("vxlan", {}, "remote_ip: required"),
    ("vxlan", {"remote_ip": REMOTE, "key": "16777216"}, "key: 16777216 is out of range"),
    ("geneve", {"remote_ip": REMOTE, "dst_port": "0"}, "dst_port: 0 is out of range"),
    ("gre", {"remote_ip": REMOTE, "dst_port": "4789"}, "dst_port: a gre port has no UDP port"),
    ("vxlan", {"remote_ip": REMOTE, "colour": "red"}, "has no option 'colour'"),
    ("vxlan", {"remote_ip": REMOTE, "tos": "inherit"}, "tos: 'inherit' is not supported"),
])
def test_bad_options_are_refused_with_one_line_naming_the_option(type_, options, needle):
    with pytest.raises(ValueError) as exc:
        confcheck.check_options("t0", type_, options)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_good_options_pass():
    confcheck.check_options("t0", "vxlan", {"remote_ip": f"{REMOTE},192.168.50.3", "key": "100"})
    confcheck.check_options("t0", "gre", {"remote_ip": REMOTE, "key": "4294967295", "csum": "true"})


@pytest.mark.parametrize(("type_", "why"), [("lisp", "L3-only"), ("stt", "obsolete")])
def test_lisp_and_stt_are_refused_with_the_reason(type_, why):
    with pytest.raises(NetdevError) as exc:
        netdev_class(type_)
    assert why in str(exc.value) and "\n" not in str(exc.value)


# -- receive: dispatch by (remote, key) and drop reasons --------------------------------

class FakeTunnel:
    def __init__(self, name):
        self.name = name
        self.rx_drops = {}
        self.options_skipped = 0


INNER = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP() / UDP())


def vxlan_endpoint():
    ep = Endpoint("vxlan", socket.AF_INET, 4789, sock=object())
    t0, t1 = FakeTunnel("t0"), FakeTunnel("t1")
    ep.add(t0, [REMOTE], 100)
    ep.add(t1, [REMOTE, "192.168.50.3"], 200)
    return ep, t0, t1


def test_datagram_goes_to_the_port_of_its_remote_and_key():
    ep, t0, t1 = vxlan_endpoint()
    assert ep.classify(vxlan_header(100) + INNER, REMOTE) == (t0, INNER)
    assert ep.classify(vxlan_header(200) + INNER, "192.168.50.3") == (t1, INNER)


def test_unknown_key_from_a_known_remote_is_counted_on_its_port():
    ep, t0, t1 = vxlan_endpoint()
    assert ep.classify(vxlan_header(300) + INNER, REMOTE) == (t0, "unknown-key")


def test_unknown_remote_is_counted_on_the_endpoint():
    ep, t0, t1 = vxlan_endpoint()
    netdev, reason = ep.classify(vxlan_header(100) + INNER, "192.168.50.9")
    assert (netdev, reason) == (None, "unknown-remote")
    ep.count(netdev, reason)
    assert ep.drops == {"unknown-remote": 1}


def test_malformed_datagram_is_counted_with_the_parsers_reason():
    ep, t0, t1 = vxlan_endpoint()
    assert ep.classify(b"\x00" * 30, REMOTE) == (t0, "bad-flags")
    assert ep.classify(b"\x08", REMOTE) == (t0, "malformed")


def test_two_ports_cannot_claim_one_remote_and_key():
    ep, t0, t1 = vxlan_endpoint()
    with pytest.raises(NetdevError, match="t0 already carries remote 192.168.50.2 key 100"):
        ep.add(FakeTunnel("t2"), [REMOTE], 100)


def test_removing_a_port_forgets_its_remotes():
    ep, t0, t1 = vxlan_endpoint()
    ep.remove(t0)
    assert ep.classify(vxlan_header(100) + INNER, REMOTE) == (t1, "unknown-key")


def test_raw_gre_socket_skips_the_outer_ipv4_header():
    ep = Endpoint("gre", socket.AF_INET, None, sock=object())
    t0 = FakeTunnel("t0")
    ep.add(t0, [REMOTE], 7)
    outer = bytes(IP(src=REMOTE, dst="192.168.50.1", proto=47))
    assert ep.classify(outer + gre_header(7) + INNER, REMOTE) == (t0, INNER)


# -- the vnet header of a decapsulated frame ------------------------------------------

def tcp_frame(payload_len: int, partial: bool) -> bytes:
    frame = bytearray(bytes(Ether() / IP(src="10.200.0.2", dst="10.200.0.1")
                            / TCP(sport=5555, dport=40000) / (b"x" * payload_len)))
    if partial:  # what a local sender leaves: the pseudo-header sum, not the checksum
        length = len(frame) - 34
        field = fold(pseudo_header_sum(frame[26:30], frame[30:34], 6, length))
        frame[50:52] = field.to_bytes(2, "big")
    return bytes(frame)


def test_complete_checksum_gets_a_zero_header():
    assert received_header(tcp_frame(100, partial=False)) == ZERO_HDR


def test_partial_checksum_is_marked_for_the_egress_kernel():
    frame = tcp_frame(100, partial=True)
    flags, gso_type, _, _, start, offset = VNET_HDR.unpack(received_header(frame))
    assert (flags, gso_type, start, offset) == (1, 0, 34, 16)
    # finishing it as the kernel would gives the checksum scapy computes
    finished = bytearray(frame)
    finished[50:52] = (~ones_sum(frame[34:]) & 0xFFFF).to_bytes(2, "big")
    assert bytes(finished) == tcp_frame(100, partial=False)


def test_whole_gso_frame_from_a_local_sender_is_cut_to_the_inner_mtu():
    frame = tcp_frame(20000, partial=True)
    flags, gso_type, hdr_len, gso_size, start, offset = VNET_HDR.unpack(
        received_header(frame, 1450))
    assert (flags, gso_type, hdr_len, gso_size, start, offset) == (1, 1, 54, 1410, 34, 16)


def test_non_ip_frame_gets_a_zero_header():
    assert received_header(bytes(Ether(type=0x0806) / (b"\0" * 28))) == ZERO_HDR


# -- state and the too-big limit --------------------------------------------------------

class FakeSocket:
    def fileno(self):
        return -1


class FakeLoop:
    def add_reader(self, fd, cb, *args):
        pass


class FakeDatapath:
    loop = FakeLoop()


class RecordingVxlan(VxlanNetdev):
    """A vxlan port whose route lookup and sockets are stand-ins."""

    routes: dict = {}
    route_lookup = staticmethod(lambda remote: RecordingVxlan.routes.get(remote))

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent = []

    def _open_send_sockets(self, tunnel, family):
        return []


def opened(options, routes):
    RecordingVxlan.routes = routes
    netdev = RecordingVxlan("t0", options)
    netdev.tunnel = parse_options("vxlan", options)
    netdev.remotes = [str(r) for r in netdev.tunnel.remote_ips]
    netdev.destinations = [(r, 4789) for r in netdev.remotes]
    netdev.destination_of = {d[0]: [d] for d in netdev.destinations}
    netdev.remote_map = RemoteMap(netdev.remotes) if len(netdev.remotes) > 1 else None
    netdev.header = netdev.make_header(netdev.tunnel)
    netdev.endpoint = Endpoint("vxlan", socket.AF_INET, 4789, sock=FakeSocket())
    port = Port("t0", "vxlan", netdev)
    netdev.resolve(port, {}, FakeDatapath())
    return netdev, port


def test_routable_remote_is_up_with_the_inner_mtu():
    netdev, port = opened({"remote_ip": REMOTE}, {REMOTE: 1500})
    assert netdev.status().up
    assert netdev.inner_mtu == 1450
    assert netdev.info()["inner_mtu"] == "1450"
    assert port.max_len == 1450 + VNET_HDR_LEN + 14


def test_unroutable_remote_is_down_with_the_reason():
    netdev, port = opened({"remote_ip": f"{REMOTE},192.168.60.9"}, {REMOTE: 1500})
    assert not netdev.status().up
    assert netdev.status().reason == "no route to 192.168.60.9"


def test_too_big_frames_are_dropped_and_counted_by_the_datapath():
    netdev, port = opened({"remote_ip": REMOTE}, {REMOTE: 1500})
    accepted = []
    netdev.send_batch = lambda packets: accepted.extend(packets) or len(packets)
    fits = ZERO_HDR + tcp_frame(1450 - 40, partial=False)
    too_big = ZERO_HDR + tcp_frame(1450 - 40 + 1, partial=False)
    Datapath(loop=None).output(port, [fits, too_big], 0)
    assert accepted == [fits]
    assert port.stats.drops == {"too-big": 1}
    assert port.stats.tx_packets == 1


def test_encapsulated_frame_carries_the_header_and_a_finished_checksum():
    netdev, port = opened({"remote_ip": REMOTE, "key": "100"}, {REMOTE: 1500})
    frame = tcp_frame(100, partial=True)
    packet = VNET_HDR.pack(1, 0, 0, 0, 34, 16) + frame
    (datagram,) = netdev.encapsulate(packet)
    assert datagram == vxlan_header(100) + tcp_frame(100, partial=False)


def test_geneve_options_are_skipped_and_counted_on_the_port():
    import struct
    ep = Endpoint("geneve", socket.AF_INET, 6081, sock=object())
    t0 = FakeTunnel("t0")
    ep.add(t0, [REMOTE], 5)
    option = struct.pack("!HBB", 0x0102, 0x01, 1) + b"\0" * 4  # class, type, 1 word of data
    header = struct.pack("!BBHI", 2, 0, 0x6558, 5 << 8)  # 2 words of options
    assert ep.classify(header + option + INNER, REMOTE) == (t0, INNER)
    assert t0.options_skipped == 1


class FakeSendSocket:
    def __init__(self):
        self.sent = []

    def sendto(self, data, destination):
        self.sent.append(destination[0])


def test_multi_remote_port_learns_which_remote_a_mac_is_behind():
    import time
    b, c = REMOTE, "192.168.50.3"
    netdev, port = opened({"remote_ip": f"{b},{c}"}, {b: 1500, c: 1500})
    sock = FakeSendSocket()
    netdev.send_socks = [sock]
    mac_x = bytes.fromhex("020000000009")
    to_x = ZERO_HDR + mac_x + bytes.fromhex("020000000001") + b"\x08\x06" + bytes(28)
    flood = ZERO_HDR + b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x08\x06" + bytes(28)

    assert netdev.send_batch([to_x]) == 1 and sock.sent == [b, c]  # unknown: every remote
    sock.sent.clear()
    netdev.learn(bytes(6) + mac_x + b"\x08\x06", c, time.monotonic())
    assert netdev.send_batch([to_x, flood]) == 2
    assert sock.sent == [c, b, c]  # known unicast to c only; the broadcast to both
    sock.sent.clear()
    netdev.learn(bytes(6) + mac_x + b"\x08\x06", c, time.monotonic() - 301)  # aged
    netdev.send_batch([to_x])
    assert sock.sent == [b, c]


def test_partial_frame_whose_headers_leave_no_room_gets_a_zero_header():
    frame = bytearray(tcp_frame(2000, partial=True))
    frame[46] = 0xF0  # TCP data offset 60 bytes: more than a 68-byte MTU leaves
    assert received_header(bytes(frame), 68) == ZERO_HDR


def test_handed_over_receive_socket_is_adopted_and_copies_closed():
    import os

    from ovslite.tunnel import endpoint as endpoints

    handed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    handed.bind(("127.0.0.1", 0))
    port = handed.getsockname()[1]
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # not this endpoint's
    copies = [os.dup(handed.fileno()), other.detach(), os.dup(handed.fileno())]
    ep = endpoints.acquire("vxlan", socket.AF_INET, port, copies[:2])
    try:
        assert ep.sock.getsockname() == ("127.0.0.1", port)  # the handed-over one, not a new bind
        assert endpoints.acquire("vxlan", socket.AF_INET, port, copies[2:]) is ep
        for fd in copies[1:]:
            with pytest.raises(OSError):
                os.fstat(fd)  # closed
    finally:
        endpoints.release(ep, None)
        endpoints.release(ep, None)
        handed.close()
    assert ep.sock is None


def test_trace_into_a_tunnel_prints_the_outer_header_and_the_inner_mtu():
    from ovslite import trace as tr
    from ovslite.bridge import Bridge

    netdev, tunnel_port = opened({"remote_ip": REMOTE, "key": "100"}, {REMOTE: 1500})
    br = Bridge("br-tun")
    local = br.add_port(Port("p1"))
    br.add_port(tunnel_port)
    for p in (local, tunnel_port):
        br.set_port_state(p, True)
    frame = ZERO_HDR + tcp_frame(100, partial=False)
    text = " | ".join(str(step) for step in tr.trace_packet(local, frame, 0.0).steps)
    assert ("t0: vxlan VNI 100 to 192.168.50.2:4789: IPv4 + UDP (source port by flow) + vxlan, "
            "+36 bytes, ttl 64, tos 0, DF, no outer checksum") in text
    assert "mtu 1450 inside the tunnel" in text


def test_trace_says_why_a_tunnel_does_not_reach_another_tunnel():
    from ovslite import trace as tr
    from ovslite.bridge import Bridge

    class TunnelLike:
        split_horizon = True

    br = Bridge("br-tun")
    t1 = br.add_port(Port("t1", "vxlan", TunnelLike()))
    t2 = br.add_port(Port("t2", "gre", TunnelLike()))
    for p in (t1, t2):
        br.set_port_state(p, True)
    frame = ZERO_HDR + b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x08\x06" + bytes(28)
    text = " | ".join(str(step) for step in tr.trace_packet(t1, frame, 0.0).steps)
    assert "split horizon: a tunnel, as is t1" in text, text

"""capture --outer's socket filter (ovslite.tunnel.outer.bpf_program), run by a
small classic-BPF interpreter over packets as they are on the underlay."""

import struct

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from ovslite.tunnel import outer

B, C = "192.168.50.2", "192.168.50.3"


def run(program, packet: bytes) -> int:
    """What the kernel's cBPF would return for `packet` (only the opcodes the filter uses)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == outer.LD_W_ABS:
            if k + 4 > len(packet):
                return 0
            a = struct.unpack_from("!I", packet, k)[0]
        elif code == outer.LD_H_ABS or code == outer.LD_H_IND:
            at = k + (x if code == outer.LD_H_IND else 0)
            if at + 2 > len(packet):
                return 0
            a = struct.unpack_from("!H", packet, at)[0]
        elif code == outer.LD_B_ABS:
            if k >= len(packet):
                return 0
            a = packet[k]
        elif code == outer.LDX_B_MSH:
            x = (packet[k] & 0x0F) * 4
        elif code == outer.JEQ_K:
            pc += jt if a == k else jf
        elif code == outer.JSET_K:
            pc += jt if a & k else jf
        elif code == outer.RET_K:
            return k
        else:
            raise AssertionError(f"opcode {code:#x}")


def vxlan(src="192.168.50.1", dst=B, dport=4789, **ip) -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst, **ip) / UDP(sport=50000, dport=dport) / (b"\x08" + bytes(7)))


@pytest.mark.parametrize(("packet", "taken"), [
    (vxlan(), True),                                    # sent to a remote
    (vxlan(src=C, dst="192.168.50.1"), True),           # received from the other remote
    (vxlan(dst="192.168.50.9"), False),                 # another host
    (vxlan(dport=6081), False),                         # another UDP port
    (vxlan(frag=10), False),                            # a later fragment: no UDP header
    (vxlan(options=[b"\x01" * 4]), True),               # IP options: the UDP header moves
    (bytes(Ether() / IP(src="192.168.50.1", dst=B) / GRE()), False),
    (bytes(Ether() / IPv6(dst="fd00::2") / UDP(dport=4789)), False),
])
def test_vxlan_filter_takes_the_tunnels_packets_only(packet, taken):
    program = outer.bpf_program("vxlan", 4789, [B, C])
    assert (run(program, packet) > 0) == taken


def test_gre_filter_matches_protocol_47_and_any_remote():
    program = outer.bpf_program("gre", None, [B])
    assert run(program, bytes(Ether() / IP(src=B, dst="192.168.50.1") / GRE(proto=0x6558)))
    assert not run(program, vxlan())


def test_ipv6_filter_compares_whole_addresses():
    program = outer.bpf_program("geneve", 6081, ["fd00::2"])
    to = Ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP(dport=6081)
    assert run(program, bytes(to))
    assert not run(program, bytes(Ether() / IPv6(src="fd00::1", dst="fd00::3") / UDP(dport=6081)))
    assert not run(program, bytes(Ether() / IPv6(src="fd00::1", dst="fd01::2") / UDP(dport=6081)))
    assert not run(program, bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP(dport=4789)))

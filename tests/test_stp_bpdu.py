"""BPDU encoding and decoding, checked against scapy's STP layer, and every malformed case."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.l2 import LLC, STP, Dot3

from ovslite.stp import bpdu as B
from ovslite.stp.bpdu import Bpdu, BpduError, decode_frame, encode_frame

SRC = bytes.fromhex("020000000001")
ROOT = (0x1000 << 48) | 0x0200000000AA
BRIDGE = (0x8000 << 48) | 0x020000000001

CONFIG = Bpdu(B.CONFIG, B.FLAG_TC | B.FLAG_TC_ACK, ROOT, 38, BRIDGE, 0x8002,
              1 * 256 + 1, 20 * 256, 2 * 256, 15 * 256)
RST = Bpdu(B.RST, B.FLAG_PROPOSAL | (3 << B.ROLE_SHIFT) | B.FLAG_LEARNING, ROOT, 20000,
           BRIDGE, 0x8003, 256, 20 * 256, 2 * 256, 15 * 256, 2)


def test_config_bpdu_is_35_bytes_in_an_802_3_frame_scapy_reads():
    frame = encode_frame(SRC, CONFIG)
    assert len(frame) == 14 + 3 + 35
    assert frame[:6] == bytes.fromhex("0180c2000000") and frame[6:12] == SRC
    assert struct.unpack("!H", frame[12:14])[0] == 38  # a length, not an EtherType
    pkt = Dot3(frame)
    assert pkt[LLC].dsap == 0x42 and pkt[LLC].ssap == 0x42 and pkt[LLC].ctrl == 3
    stp = pkt[STP]
    assert (stp.proto, stp.version, stp.bpdutype, stp.bpduflags) == (0, 0, 0, 0x81)
    assert stp.rootid == 0x1000 and stp.rootmac == "02:00:00:00:00:aa"
    assert stp.pathcost == 38 and stp.bridgeid == 0x8000 and stp.bridgemac == "02:00:00:00:00:01"
    assert stp.portid == 0x8002
    # scapy's time fields are 1/256 s fixed point, in seconds
    assert (stp.age, stp.maxage, stp.hellotime, stp.fwddelay) == (1 + 1 / 256, 20, 2, 15)


def test_rst_bpdu_is_36_bytes_version_2_with_version_1_length_0():
    frame = encode_frame(SRC, RST)
    assert len(frame) == 14 + 3 + 36 and frame[12:14] == b"\x00\x27"
    body = frame[17:]
    assert body[2] == 2 and body[3] == 2 and body[35] == 0
    stp = Dot3(frame)[STP]
    assert stp.version == 2 and stp.bpdutype == 2 and stp.bpduflags == RST.flags
    assert decode_frame(frame).role == "designated"


def test_tcn_bpdu_is_4_bytes():
    frame = encode_frame(SRC, Bpdu(B.TCN))
    assert frame[12:] == b"\x00\x07\x42\x42\x03\x00\x00\x00\x80"


@pytest.mark.parametrize("bpdu", [CONFIG, RST, Bpdu(B.TCN)], ids=["config", "rst", "tcn"])
def test_round_trip(bpdu):
    assert decode_frame(encode_frame(SRC, bpdu)) == bpdu


def test_decodes_what_scapy_builds_with_ethernet_padding():
    frame = bytes(Dot3(dst="01:80:c2:00:00:00", src="02:00:00:00:00:05") / LLC() /
                  STP(bpduflags=1, rootid=4096, rootmac="02:00:00:00:00:aa", pathcost=4,
                      bridgeid=32768, bridgemac="02:00:00:00:00:05", portid=0x8001,
                      age=1, maxage=20, hellotime=2, fwddelay=15))
    padded = frame + bytes(60 - len(frame))  # what a NIC pads to
    got = decode_frame(padded)
    assert got == Bpdu(B.CONFIG, 1, (4096 << 48) | 0x0200000000AA, 4,
                       (32768 << 48) | 0x020000000005, 0x8001, 256, 20 * 256, 512, 15 * 256)


def test_mstp_bpdu_reads_as_rst():
    body = B.encode_body(RST)
    mstp = body[:2] + b"\x03" + body[3:] + b"\x00" * 64
    frame = B.STP_GROUP_MAC + SRC + struct.pack("!H", 3 + len(mstp)) + B.LLC_STP + mstp
    got = decode_frame(frame)
    assert got.kind == B.RST and got.version == 3 and got.root_id == ROOT


def _frame(body, dst=B.STP_GROUP_MAC, llc=B.LLC_STP, length=None):
    payload = llc + body
    return dst + SRC + struct.pack("!H", len(payload) if length is None else length) + payload


CONFIG_BODY = B.encode_body(CONFIG)
RST_BODY = B.encode_body(RST)
MALFORMED = {
    "short-frame": B.STP_GROUP_MAC + SRC + b"\x00\x26\x42",
    "not-stp-group": _frame(CONFIG_BODY, dst=bytes.fromhex("0180c2000001")),
    "not-llc": _frame(CONFIG_BODY, length=0x0800),
    "bad-length": _frame(CONFIG_BODY, length=60),
    "bad-llc": _frame(CONFIG_BODY, llc=b"\xaa\xaa\x03"),
    "bad-protocol-id": _frame(b"\x00\x01" + CONFIG_BODY[2:]),
    "short-config": _frame(CONFIG_BODY[:34]),
    "short-rst": _frame(RST_BODY[:35]),
    "short-tcn": _frame(b"\x00\x00\x00"),
    "message-age-exceeds-max-age": encode_frame(
        SRC, Bpdu(B.CONFIG, 0, ROOT, 0, BRIDGE, 0x8001, 20 * 256, 20 * 256, 512, 3840)),
    "unknown-type": _frame(b"\x00\x00\x00\x07" + CONFIG_BODY[4:]),
}


def test_every_reason_has_a_case():
    assert set(MALFORMED) == set(B.MALFORMED_REASONS)


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_malformed_is_rejected_with_its_reason(reason):
    with pytest.raises(BpduError) as err:
        decode_frame(MALFORMED[reason])
    assert err.value.reason == reason


def test_type_2_with_version_0_is_not_rst():
    body = RST_BODY[:2] + b"\x00" + RST_BODY[3:]
    with pytest.raises(BpduError) as err:
        decode_frame(_frame(body))
    assert err.value.reason == "unknown-type"


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_spanning_tree_counts_malformed_per_port_and_reason(reason):
    from ovslite.stp import BridgeParams, PortParams, SpanningTree
    stp = SpanningTree("stp", SRC, BridgeParams(), 0.0)
    stp.add_port("p1", 1, SRC, PortParams(), True, 1000, 0.0)
    before = stp.show()["root"]
    stp.receive("p1", MALFORMED[reason], 0.5)
    stp.receive("p1", MALFORMED[reason], 0.6)
    port = stp.show()["ports"]["p1"]
    assert port["malformed"] == {reason: 2} and port["rx_bpdus"] == 0
    assert stp.show()["root"] == before

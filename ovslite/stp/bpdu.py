"""BPDU wire format, 802.1D-2004 clause 9: configuration, TCN and RST BPDUs.

A BPDU travels in an 802.3 frame: destination 01:80:C2:00:00:00, the source
MAC of the sending port, a length field (not an EtherType: the LLC header plus
the BPDU, so 38 for a configuration BPDU), LLC DSAP/SSAP 0x42 and control 0x03,
then the BPDU: 35 bytes (configuration), 4 (TCN) or 36 (RST, version 2, with a
version-1-length octet of 0). Times are carried in units of 1/256 s; `Bpdu`
keeps them in those units so a decoded BPDU re-encodes to the same bytes.

Frames are not padded to 60 bytes here (the length field delimits the BPDU;
padding is the sending device's business); trailing padding on receipt is
ignored. Validation follows 9.3.4: a configuration BPDU needs 35 octets and a
message age below its max age, an RST BPDU (version 2 or more, type 2) needs 36
octets; anything else raises `BpduError` whose `reason` names the defect, for
the caller to count. Versions above 2 with type 2 (MSTP) decode as RST BPDUs,
as 802.1D-2004 says a bridge treats them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

STP_GROUP_MAC = bytes.fromhex("0180c2000000")
LLC_STP = b"\x42\x42\x03"

CONFIG = "config"
TCN = "tcn"
RST = "rst"
_TYPE_CODE = {CONFIG: 0x00, TCN: 0x80, RST: 0x02}

# flags (9.3.3); the RSTP ones occupy the six bits the 802.1D ones leave free
FLAG_TC = 0x01
FLAG_PROPOSAL = 0x02
FLAG_LEARNING = 0x10
FLAG_FORWARDING = 0x20
FLAG_AGREEMENT = 0x40
FLAG_TC_ACK = 0x80
ROLE_SHIFT = 2
ROLE_MASK = 0x0C
# port role codes in the flags of an RST BPDU
ROLE_CODE = {"unknown": 0, "alternate": 1, "backup": 1, "root": 2, "designated": 3}
ROLE_OF_CODE = {0: "unknown", 1: "alternate", 2: "root", 3: "designated"}

_CONFIG_BODY = struct.Struct("!HBBBQIQHHHHH")  # 35 bytes
_HEADER_LEN = 14 + 3  # Ethernet with 802.3 length, then LLC

CONFIG_LEN = _CONFIG_BODY.size
TCN_LEN = 4
RST_LEN = CONFIG_LEN + 1

MALFORMED_REASONS = (
    "short-frame", "not-stp-group", "not-llc", "bad-length", "bad-llc",
    "bad-protocol-id", "short-config", "short-rst", "short-tcn",
    "message-age-exceeds-max-age", "unknown-type",
)


class BpduError(ValueError):
    """A frame that is not a valid BPDU; `reason` is one of MALFORMED_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Bpdu:
    kind: str  # CONFIG, TCN or RST
    flags: int = 0
    root_id: int = 0  # 64 bits: priority (16) then MAC (48)
    root_path_cost: int = 0
    bridge_id: int = 0
    port_id: int = 0
    message_age: int = 0  # the four times in 1/256 s
    max_age: int = 0
    hello_time: int = 0
    forward_delay: int = 0
    version: int = 0  # 0 for CONFIG and TCN, 2 (or more, when received) for RST

    @property
    def role(self) -> str:
        return ROLE_OF_CODE[(self.flags & ROLE_MASK) >> ROLE_SHIFT]


def seconds_to_wire(seconds: float) -> int:
    return max(0, min(0xFFFF, round(seconds * 256)))


def encode_body(bpdu: Bpdu) -> bytes:
    if bpdu.kind == TCN:
        return struct.pack("!HBB", 0, 0, _TYPE_CODE[TCN])
    version = 2 if bpdu.kind == RST else 0
    body = _CONFIG_BODY.pack(
        0, version, _TYPE_CODE[bpdu.kind], bpdu.flags, bpdu.root_id, bpdu.root_path_cost,
        bpdu.bridge_id, bpdu.port_id, bpdu.message_age, bpdu.max_age, bpdu.hello_time,
        bpdu.forward_delay)
    return body + b"\x00" if bpdu.kind == RST else body


def encode_frame(src_mac: bytes, bpdu: Bpdu) -> bytes:
    body = LLC_STP + encode_body(bpdu)
    return STP_GROUP_MAC + bytes(src_mac) + struct.pack("!H", len(body)) + body


def decode_frame(frame: bytes) -> Bpdu:
    """The BPDU in a whole Ethernet frame to the STP group address."""
    if len(frame) < _HEADER_LEN:
        raise BpduError("short-frame", f"{len(frame)} bytes")
    if frame[:6] != STP_GROUP_MAC:
        raise BpduError("not-stp-group", frame[:6].hex(":"))
    (length,) = struct.unpack_from("!H", frame, 12)
    if length >= 0x600:
        raise BpduError("not-llc", f"EtherType 0x{length:04x}")
    if length < 3 or 14 + length > len(frame):
        raise BpduError("bad-length", f"length field {length}, {len(frame) - 14} bytes follow")
    if frame[14:17] != LLC_STP:
        raise BpduError("bad-llc", frame[14:17].hex())
    return decode_body(frame[17:14 + length])


def decode_body(body: bytes) -> Bpdu:
    if len(body) < TCN_LEN:
        raise BpduError("short-tcn", f"{len(body)} bytes")
    protocol, version, code = struct.unpack_from("!HBB", body)
    if protocol != 0:
        raise BpduError("bad-protocol-id", str(protocol))
    if code == _TYPE_CODE[TCN]:
        return Bpdu(TCN)
    if code == _TYPE_CODE[RST] and version >= 2:
        if len(body) < RST_LEN:
            raise BpduError("short-rst", f"{len(body)} bytes")
        kind = RST
    elif code == _TYPE_CODE[CONFIG]:
        if len(body) < CONFIG_LEN:
            raise BpduError("short-config", f"{len(body)} bytes")
        kind = CONFIG
    else:
        raise BpduError("unknown-type", f"type 0x{code:02x} version {version}")
    (_, _, _, flags, root_id, cost, bridge_id, port_id,
     age, max_age, hello, fwd) = _CONFIG_BODY.unpack_from(body)
    if kind == CONFIG and age >= max_age:
        raise BpduError("message-age-exceeds-max-age", f"{age}/256 s >= {max_age}/256 s")
    return Bpdu(kind, flags, root_id, cost, bridge_id, port_id, age, max_age, hello, fwd,
                version if kind == RST else 0)

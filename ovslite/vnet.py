"""The packet layout every netdev hands the bridge: virtio_net_hdr + Ethernet.

struct virtio_net_hdr (10 bytes, host byte order):
    u8 flags; u8 gso_type; u16 hdr_len; u16 gso_size; u16 csum_start; u16 csum_offset

AF_PACKET with PACKET_VNET_HDR and TAP with IFF_VNET_HDR both use it, so
a 64 KB GSO frame with a partial checksum travels through ovslite as one
buffer and the kernel segments or checksums it on the far side, if at all.
A frame that was born in userspace (trace --generate, tests) gets ZERO_HDR.
"""

import struct

VNET_HDR_LEN = 10
ZERO_HDR = bytes(VNET_HDR_LEN)

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0

VNET_HDR = struct.Struct("=BBHHHH")

# Offsets of Ethernet fields inside a packet (after the vnet header).
ETH_DST = slice(VNET_HDR_LEN, VNET_HDR_LEN + 6)
ETH_SRC = slice(VNET_HDR_LEN + 6, VNET_HDR_LEN + 12)
ETH_TYPE = slice(VNET_HDR_LEN + 12, VNET_HDR_LEN + 14)
ETH_HLEN = 14
MIN_PACKET_LEN = VNET_HDR_LEN + ETH_HLEN

# Room for the largest GSO frame veth/TAP hand us (gso_max_size 64 KB) plus headers.
MAX_PACKET_LEN = VNET_HDR_LEN + 65536 + 64


def ethernet(frame: bytes) -> bytes:
    """A packet carrying `frame` with no offload metadata."""
    return ZERO_HDR + frame


def is_gso(packet: bytes) -> bool:
    return packet[1] != VIRTIO_NET_HDR_GSO_NONE


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """'aa:bb:cc:dd:ee:ff' -> 6 bytes; ValueError with a clear message otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r} (expected aa:bb:cc:dd:ee:ff)")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r} (expected aa:bb:cc:dd:ee:ff)") from None


# -- 802.1Q tags. Each keeps the offload metadata true: csum_start and hdr_len
# count from the start of the frame, so they move with the 4 bytes of a tag.

TPID_8021Q = 0x8100
_TAG = struct.Struct("!HH")


def _shift_hdr(packet: bytes, delta: int) -> bytes:
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(packet)
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        csum_start += delta
    if hdr_len:
        hdr_len += delta
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def push_tag(packet: bytes, tci: int, tpid: int = TPID_8021Q) -> bytes:
    """Insert an 802.1Q tag (TCI = PCP/DEI/VID) after the MAC addresses."""
    return _shift_hdr(packet, 4) + packet[10:22] + _TAG.pack(tpid, tci) + packet[22:]


def strip_tag(packet: bytes) -> bytes:
    """Remove the outer 802.1Q tag."""
    return _shift_hdr(packet, -4) + packet[10:22] + packet[26:]


def set_vid(packet: bytes, vid: int) -> bytes:
    """Rewrite the outer tag's VLAN id, keeping its priority bits."""
    tci = ((packet[24] << 8 | packet[25]) & 0xF000) | vid
    return packet[:24] + tci.to_bytes(2, "big") + packet[26:]

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


def frame_of(packet: bytes) -> bytes:
    """The Ethernet frame inside a packet (for capture and trace)."""
    return bytes(packet[VNET_HDR_LEN:])


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

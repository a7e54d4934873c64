"""`gre`: RFC 2784/2890 transparent Ethernet bridging (0x6558) over a raw
IPPROTO_GRE socket, which needs no GRE support in the kernel. A key field is
sent only when `key` is given, as in OVS; with `csum=true` the checksum covers
each frame, so the header is built per frame (a checksum over the whole
frame: costly in Python)."""

from __future__ import annotations

from ..tunnel.headers import gre_header
from ..tunnel.segment import wire_frames
from . import register
from .tunnel import TunnelNetdev


@register
class GreNetdev(TunnelNetdev):
    type = "gre"

    def make_header(self, tunnel) -> bytes:
        return gre_header(tunnel.key if tunnel.key_present else None)

    def encapsulate(self, packet) -> list[bytes]:
        tunnel = self.tunnel
        if not tunnel.csum:
            return wire_frames(packet, self.inner_mtu, self.header)
        key = tunnel.key if tunnel.key_present else None
        return [gre_header(key, True, frame) + frame
                for frame in wire_frames(packet, self.inner_mtu)]

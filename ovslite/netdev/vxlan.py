"""`vxlan`: RFC 7348 over UDP (default port 4789); the shared logic is in tunnel.py."""

from __future__ import annotations

from ..tunnel.headers import vxlan_header
from . import register
from .tunnel import TunnelNetdev


@register
class VxlanNetdev(TunnelNetdev):
    type = "vxlan"

    def make_header(self, tunnel) -> bytes:
        return vxlan_header(tunnel.key)

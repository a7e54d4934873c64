"""`vxlan`: RFC 7348 over UDP (default port 4789); the shared logic is in tunnel.py."""

from __future__ import annotations

from ..tunnel.headers import vxlan_header
from . import register
from .kvxlan import KernelVxlan
from .tunnel import TunnelNetdev


@register
class VxlanNetdev(TunnelNetdev):
    type = "vxlan"
    kernel_transmit = KernelVxlan  # frames leave through a kernel vxlan device

    def make_header(self, tunnel) -> bytes:
        return vxlan_header(tunnel.key)

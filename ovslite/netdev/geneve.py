"""`geneve`: RFC 8926 over UDP (default port 6081), no options sent; received
options are skipped and counted (tunnel.py, ovslite.tunnel.headers)."""

from __future__ import annotations

from ..tunnel.headers import geneve_header
from . import register
from .tunnel import TunnelNetdev


@register
class GeneveNetdev(TunnelNetdev):
    type = "geneve"

    def make_header(self, tunnel) -> bytes:
        return geneve_header(tunnel.key)

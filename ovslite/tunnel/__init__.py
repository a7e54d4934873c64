"""Tunnel ports' shared parts: options, header build/parse, software GSO.

The providers (ovslite/netdev/vxlan.py, geneve.py, gre.py) are built on these;
nothing here does I/O. See docs/overlay-design.md for the measurements that
chose the design (kernel does outer IP/UDP, ovslite the tunnel header).
"""

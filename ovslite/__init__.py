"""ovslite: a Linux userspace Ethernet switch."""

__version__ = "0.1.0"

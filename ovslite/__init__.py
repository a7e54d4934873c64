"""ovslite: a Linux userspace Ethernet switch."""

from . import pyroute2_lazy

__version__ = "0.1.0"

# Before any ovslite module imports a pyroute2 submodule (see pyroute2_lazy).
pyroute2_lazy.install()

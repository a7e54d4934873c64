"""Netdev providers, registered by type name (see base.py for the contract)."""

from __future__ import annotations

from ..tunnel.options import REFUSED_TYPES
from .base import LinkStatus, Netdev, NetdevError

_CLASSES: dict[str, type[Netdev]] = {}


def register(cls: type[Netdev]) -> type[Netdev]:
    """Class decorator: make `cls` available as `add-port --type cls.type`."""
    if not cls.type or cls.type in _CLASSES:
        raise ValueError(f"netdev type {cls.type!r} is empty or already registered")
    _CLASSES[cls.type] = cls
    return cls


def netdev_class(type_name: str) -> type[Netdev]:
    reason = REFUSED_TYPES.get(type_name)
    if reason is not None:  # known tunnel types ovslite will not carry, with why
        raise NetdevError(f"port type {type_name} is not supported: {reason}")
    try:
        return _CLASSES[type_name]
    except KeyError:
        known = ", ".join(sorted(_CLASSES))
        raise NetdevError(f"unknown port type {type_name!r} (known: {known})") from None


def netdev_types() -> list[str]:
    return sorted(_CLASSES)


# Providers register themselves on import.
from . import geneve, gre, internal, patch, system, tap, vxlan  # noqa: E402,F401

__all__ = ["LinkStatus", "Netdev", "NetdevError", "netdev_class", "netdev_types", "register"]

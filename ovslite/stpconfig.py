"""Spanning tree settings: OVS's names, defaults and ranges, parsed and checked whole.

Bridge (`set-br BR KEY=VALUE`, kept in the bridge's "config"):
    stp=on|off, rstp=on|off (not both on), stp-priority 0-65535, stp-hello-time
    1-10, stp-max-age 6-40, stp-forward-delay 4-30; rstp-priority 0-61440 in steps
    of 4096, rstp-hello-time 1-2, rstp-max-age 6-40, rstp-forward-delay 4-30,
    rstp-transmit-hold-count 1-10.
Port (`set-port P KEY=VALUE`, kept in the port's "settings"):
    stp-enable=on|off (both protocols), stp-port-priority 0-255, stp-path-cost
    1-65535, rstp-port-priority 0-240 in steps of 16, rstp-path-cost 1-200000000,
    rstp-admin-edge, rstp-auto-edge.

Like portconfig, `parse_*` take text (a request) or typed values (the database,
which must then be exactly what parse produces) and raise ValueError with one
line naming the setting. `check_bridge` checks what only the whole says: not
both protocols, and 802.1D's timer relation 2 x (forward delay - 1) >= max age
>= 2 x (hello time + 1), on the values in effect (set or default). OVS takes
out-of-step priorities and rounds them down; here they are refused, so what
`stp-show` prints is what was asked for.
"""

from __future__ import annotations

#: key -> (lowest, highest, default, step)
BRIDGE_NUMBERS = {
    "stp-priority": (0, 65535, 32768, 1),
    "stp-hello-time": (1, 10, 2, 1),
    "stp-max-age": (6, 40, 20, 1),
    "stp-forward-delay": (4, 30, 15, 1),
    "rstp-priority": (0, 61440, 32768, 4096),
    "rstp-hello-time": (1, 2, 2, 1),
    "rstp-max-age": (6, 40, 20, 1),
    "rstp-forward-delay": (4, 30, 15, 1),
    "rstp-transmit-hold-count": (1, 10, 6, 1),
}
BRIDGE_BOOLS = ("stp", "rstp")
BRIDGE_KEYS = (*BRIDGE_BOOLS, *BRIDGE_NUMBERS)

PORT_NUMBERS = {
    "stp-port-priority": (0, 255, 128, 1),
    "stp-path-cost": (1, 65535, None, 1),
    "rstp-port-priority": (0, 240, 128, 16),
    "rstp-path-cost": (1, 200_000_000, None, 1),
}
PORT_BOOLS = {"stp-enable": True, "rstp-admin-edge": False, "rstp-auto-edge": True}
PORT_KEYS = (*PORT_BOOLS, *PORT_NUMBERS)


def _number(key: str, raw, lo: int, hi: int, step: int) -> int:
    from .portconfig import shown  # here: portconfig imports this module

    if type(raw) is int:
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{key}: {shown(raw)} is not a number") from None
    else:
        raise ValueError(f"{key}: {shown(raw)} is not a number")
    if not lo <= value <= hi:
        raise ValueError(f"{key}: {value} is out of range ({lo}-{hi})")
    if value % step:
        raise ValueError(f"{key}: {value} is not a multiple of {step}")
    return value


def parse_bridge(key: str, raw):
    """A set-br spanning tree setting (not '', which the caller handles) -> typed."""
    if key in BRIDGE_BOOLS:
        from .portconfig import parse_bool

        return parse_bool(key, raw)
    lo, hi, _, step = BRIDGE_NUMBERS[key]
    return _number(key, raw, lo, hi, step)


def parse_port(key: str, raw):
    """A set-port spanning tree setting (not '') -> typed."""
    if key in PORT_BOOLS:
        from .portconfig import parse_bool

        return parse_bool(key, raw)
    lo, hi, _, step = PORT_NUMBERS[key]
    return _number(key, raw, lo, hi, step)


def bridge_value(config: dict, key: str):
    """The value in effect: configured, else the default."""
    if key in BRIDGE_BOOLS:
        return config.get(key, False)
    return config.get(key, BRIDGE_NUMBERS[key][2])


def port_value(settings: dict, key: str):
    if key in PORT_BOOLS:
        return settings.get(key, PORT_BOOLS[key])
    return settings.get(key, PORT_NUMBERS[key][2])


def check_bridge(config: dict) -> None:
    """What a bridge's settings say together (see the module's docstring)."""
    if config.get("stp") and config.get("rstp"):
        raise ValueError("stp and rstp cannot both be on (turn one off)")
    for proto in ("stp", "rstp"):
        hello, max_age, delay = (bridge_value(config, f"{proto}-{k}")
                                 for k in ("hello-time", "max-age", "forward-delay"))
        if max_age > 2 * (delay - 1):
            raise ValueError(f"{proto}-max-age {max_age} is more than 2 x ({proto}-forward-delay "
                             f"{delay} - 1), which 802.1D forbids")
        if max_age < 2 * (hello + 1):
            raise ValueError(f"{proto}-max-age {max_age} is less than 2 x ({proto}-hello-time "
                             f"{hello} + 1), which 802.1D forbids")


def mode(config: dict) -> str | None:
    """"stp", "rstp" or None (off)."""
    if config.get("rstp"):
        return "rstp"
    return "stp" if config.get("stp") else None

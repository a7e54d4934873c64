"""Per-port switching settings: parsing, validation and defaults.

Settings arrive as strings (`set-port P tag=10 trunks=10,20-30`) and are kept
typed in the database under a port's "settings". Every error is a ValueError
with a one-line message naming the setting.

VLAN modes follow Open vSwitch (ovs-vswitchd.conf.db, Port table):
- access: untagged frames enter VLAN `tag`; tagged frames (VID != 0) are dropped;
  frames leave untagged.
- trunk: tagged frames of the VLANs in `trunks` (all if empty) enter their VLAN;
  untagged frames are VLAN 0 (dropped if `trunks` is set and lacks 0); frames
  leave tagged, VLAN 0 untagged.
- native-tagged / native-untagged: a trunk whose untagged frames enter VLAN
  `tag` (the native VLAN), which leaves tagged or untagged respectively.
Without `vlan_mode`: access if `tag` is set, else trunk (as OVS).

`split-horizon` (on for tunnel ports, off for the others) puts a port in the
bridge's split-horizon group: no frame goes from one port of the group to
another. Turning it off on tunnel ports is for relay designs (a hub host that
forwards between spokes); a full mesh needs it on.

`parse` is the one validator of a setting: requests hand it text, the
database hands it typed values, which must then be of exactly the type parse
would produce (no 1.0 for an int, no 1 for a bool, no NaN), so the two doors
cannot drift apart.
"""

from __future__ import annotations

import reprlib

from . import stpconfig

VLAN_MODES = ("access", "trunk", "native-tagged", "native-untagged")
BOOL_SETTINGS = ("learning", "flood", "mcast-flood", "bcast-flood", "isolated")
DEFAULTS = {"learning": True, "flood": True, "mcast-flood": True, "bcast-flood": True,
            "isolated": False, "admin": "up", **stpconfig.PORT_BOOLS}
KNOWN = ("tag", "trunks", "vlan-mode", *BOOL_SETTINGS, "admin", "mtu", "storm-control",
         "split-horizon", *stpconfig.PORT_KEYS)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 2


def shown(value) -> str:
    """repr() for a message: short, one line, even for a huge or deeply nested value."""
    return _SHORT.repr(value)


def parse_bool(key: str, text) -> bool:
    if isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ValueError(f"{key}: expected on or off, not {shown(text)}")
    value = text.lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{key}: expected on or off, not {shown(text)}")


def _int(text) -> int:
    """int() of text, or of an int that is exactly one; ValueError for anything else."""
    if type(text) is int:
        return text
    if not isinstance(text, str):
        raise ValueError
    return int(text)


def _vid(key: str, text) -> int:
    try:
        vid = _int(text)
    except ValueError:
        raise ValueError(f"{key}: {shown(text)} is not a VLAN number") from None
    if not 0 <= vid <= 4094:
        raise ValueError(f"{key}: VLAN {vid} is out of range (0-4094)")
    return vid


def parse_trunks(text) -> list[int]:
    """'10,20-22' -> [10, 20, 21, 22]; '' -> [] (all VLANs)."""
    if isinstance(text, list):
        return sorted({_vid("trunks", v) for v in text})
    if not isinstance(text, str):
        raise ValueError(f"trunks: {shown(text)} is not a list of VLANs")
    out: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = _vid("trunks", lo), _vid("trunks", hi)
            if a > b:
                raise ValueError(f"trunks: range {part!r} runs backwards")
            out.update(range(a, b + 1))
        else:
            out.add(_vid("trunks", part))
    return sorted(out)


def _positive(key: str, text, lo: int, hi: int) -> int:
    try:
        value = _int(text)
    except ValueError:
        raise ValueError(f"{key}: {shown(text)} is not a number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{key}: {value} is out of range ({lo}-{hi})")
    return value


def parse(settings: dict) -> dict:
    """Validate and type `settings` (strings or typed values); ValueError if bad.

    An empty string or None removes a setting (back to its default); a database
    holds no such removals (ovslite.confcheck refuses them there).
    """
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be an object, not {type(settings).__name__}")
    out: dict = {}
    for key, raw in settings.items():
        if key not in KNOWN:
            raise ValueError(f"unknown port setting {shown(key)} (known: {', '.join(KNOWN)})")
        if raw is None or isinstance(raw, str) and raw == "":
            out[key] = None
        elif key == "tag":
            out[key] = _vid(key, raw)
        elif key == "trunks":
            out[key] = parse_trunks(raw)
        elif key == "vlan-mode":
            if raw not in VLAN_MODES:
                raise ValueError(f"vlan-mode: expected one of {', '.join(VLAN_MODES)}, not {shown(raw)}")
            out[key] = raw
        elif key in BOOL_SETTINGS or key == "split-horizon":  # the latter: default by type
            out[key] = parse_bool(key, raw)
        elif key == "admin":
            if raw not in ("up", "down"):
                raise ValueError(f"admin: expected up or down, not {shown(raw)}")
            out[key] = raw
        elif key == "mtu":
            out[key] = _positive(key, raw, 68, 65535)
        elif key == "storm-control":
            out[key] = _positive(key, raw, 1, 100_000_000)
        elif key in stpconfig.PORT_KEYS:
            out[key] = stpconfig.parse_port(key, raw)
    return out


def merge(current: dict, changes: dict) -> dict:
    """`current` with `changes` applied (None removes); checks the VLAN combination."""
    merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
    check_vlans(merged)
    return merged


def check_vlans(s: dict) -> None:
    mode = vlan_mode(s)
    if mode == "access" and "tag" not in s:
        raise ValueError("vlan-mode access needs a tag")
    if mode.startswith("native") and "tag" not in s:
        raise ValueError(f"vlan-mode {mode} needs a tag (the native VLAN)")
    if mode == "trunk" and "tag" in s:
        raise ValueError("vlan-mode trunk takes no tag (use native-tagged or native-untagged)")
    if mode == "access" and s.get("trunks"):
        raise ValueError("vlan-mode access takes no trunks")


def vlan_mode(s: dict) -> str:
    return s.get("vlan-mode") or ("access" if "tag" in s else "trunk")


def carries(s: dict, vlan: int) -> bool:
    """Whether a port with settings `s` sends and receives frames of `vlan`
    (as ovslite.bridge.Port.egress_tagged, from the settings alone)."""
    mode = vlan_mode(s)
    trunks = s.get("trunks") or None
    if mode == "access":
        return vlan == s["tag"]
    if mode != "trunk":
        if vlan == s["tag"]:
            return True
        if vlan == 0:
            return False  # a native port's untagged frames belong to its tag
    return trunks is None or vlan in trunks


def static_vlans(s: dict) -> list[int]:
    """The VLANs a static MAC entry given without a VLAN is put in (fdb-add without
    --vlan), like `bridge fdb add` without `vlan`, which adds the entry to every VLAN
    the port is a member of: an access port's tag; a trunk's listed VLANs (0 too if
    it lists it), a native port's tag and listed VLANs. A trunk of every VLAN gets
    only its untagged VLAN (0, or the native tag): 4095 copies of one entry would
    be mostly noise, and the kernel, when a bridge does not filter VLANs, likewise
    adds the one entry of VLAN 0."""
    mode = vlan_mode(s)
    trunks = s.get("trunks") or []
    if mode == "access":
        return [s["tag"]]
    if mode == "trunk":
        return list(trunks) or [0]
    return [v for v in sorted({s["tag"], *trunks}) if carries(s, v)]

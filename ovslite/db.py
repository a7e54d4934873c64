"""The configuration database: the switch's desired state, as one JSON file.

    {"format": 1, "bridges": {"br0": {"config": {}, "ports": {
        "veth0": {"type": "system", "options": {}}}}}}

Writes are atomic: a temporary file in the same directory, fsync, rename, then
fsync of the directory, so a crash leaves either the old or the new file. A file
that does not parse or validate is refused with a one-line reason and never
rewritten, so a human can repair it.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile

from . import portconfig
from .names import check_ifname
from .vnet import parse_mac

FORMAT = 1
#: bridge settings users set (set-br) and the JSON types they accept
BRIDGE_SETTINGS = {"mac-aging-time": (int, float), "mac-table-size": (int,)}


class DatabaseError(Exception):
    pass


def empty() -> dict:
    return {"format": FORMAT, "bridges": {}}


def validate(doc) -> dict:
    """Raise DatabaseError unless `doc` is a well-formed configuration."""
    if not isinstance(doc, dict) or type(doc.get("format")) is not int or doc["format"] != FORMAT:
        raise DatabaseError(f"not an ovslite database of format {FORMAT}")
    bridges = doc.get("bridges")
    if not isinstance(bridges, dict):
        raise DatabaseError("'bridges' must be an object")
    seen: set[str] = set()
    for br_name, br in bridges.items():
        try:
            check_ifname(br_name, "bridge")
        except ValueError as exc:
            raise DatabaseError(str(exc)) from None
        if not isinstance(br, dict) or not isinstance(br.get("ports"), dict):
            raise DatabaseError(f"bridge {br_name}: 'ports' must be an object")
        config = br.get("config", {})
        if not isinstance(config, dict):
            raise DatabaseError(f"bridge {br_name}: 'config' must be an object")
        for key, kind in BRIDGE_SETTINGS.items():
            value = config.get(key)
            if value is not None and (type(value) not in kind or value <= 0):
                raise DatabaseError(f"bridge {br_name}: {key} must be a positive number")
        _check_statics(br_name, config.get("static-macs", []), br["ports"])
        for port_name, port in br["ports"].items():
            try:
                check_ifname(port_name, "port")
            except ValueError as exc:
                raise DatabaseError(f"bridge {br_name}: {exc}") from None
            if port_name in seen:
                raise DatabaseError(f"port {port_name} is on more than one bridge")
            seen.add(port_name)
            if not isinstance(port, dict) or not isinstance(port.get("type"), str):
                raise DatabaseError(f"port {port_name}: 'type' must be a string")
            if not isinstance(port.get("options", {}), dict):
                raise DatabaseError(f"port {port_name}: 'options' must be an object")
            settings = port.get("settings", {})
            try:
                if not isinstance(settings, dict) or portconfig.parse(settings) != settings:
                    raise ValueError("'settings' must be an object of typed values")
                portconfig.check_vlans(settings)
            except ValueError as exc:
                raise DatabaseError(f"port {port_name}: {exc}") from None
    return doc


def _check_statics(br_name: str, statics, ports: dict) -> None:
    if not isinstance(statics, list):
        raise DatabaseError(f"bridge {br_name}: 'static-macs' must be a list")
    for e in statics:
        try:
            if not isinstance(e, dict) or e.get("port") not in ports:
                raise ValueError("entry names no port of the bridge")
            parse_mac(e.get("mac", ""))
            if type(e.get("vlan")) is not int or not 0 <= e["vlan"] <= 4094:
                raise ValueError("entry has no valid vlan")
        except (ValueError, AttributeError) as exc:
            raise DatabaseError(f"bridge {br_name}: static-macs: {exc}") from None


class ConfigDB:
    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict:
        """The stored configuration, or an empty one if the file does not exist."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return empty()
        except OSError as exc:
            raise DatabaseError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatabaseError(f"{self.path} is corrupt: {exc}") from None
        try:
            return validate(doc)
        except DatabaseError as exc:
            raise DatabaseError(f"{self.path} is corrupt: {exc}") from None

    def save(self, doc: dict) -> None:
        validate(doc)
        data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".conf.db.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def clone(doc: dict) -> dict:
    return copy.deepcopy(doc)

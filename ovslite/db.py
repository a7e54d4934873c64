"""The configuration database: the switch's desired state, as one JSON file.

    {"format": 1, "bridges": {"br0": {"config": {}, "ports": {
        "veth0": {"type": "system", "options": {}}}}}}

Writes are atomic: a temporary file in the same directory (".conf.db.XXXXXXXX"),
fsync, rename, then fsync of the directory, so a crash leaves either the old or
the new file; a kill between the two leaves the temporary file, which the
daemon removes at its next start (remove_leftovers). A file that does not parse
or validate is refused with a one-line reason and never rewritten, so a human
can repair it. Validation is ovslite.confcheck, the checks every command makes;
JSON's extensions NaN and Infinity, numbers beyond a float (1e400), nesting
deeper than the parser's recursion and files over MAX_SIZE are refused too.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile

from . import portconfig
from .confcheck import BRIDGE_SETTINGS, check_bridges
from .portconfig import shown

__all__ = ["BRIDGE_SETTINGS", "ConfigDB", "DatabaseError", "clone", "empty", "validate"]

FORMAT = 1
#: the largest database read (a file far beyond any real configuration is a mistake)
MAX_SIZE = 64 << 20


class DatabaseError(Exception):
    pass


def empty() -> dict:
    return {"format": FORMAT, "bridges": {}}


def validate(doc) -> dict:
    """Raise DatabaseError unless `doc` is a well-formed configuration: the same
    checks every command makes (ovslite.confcheck), so no file holds what a command
    would refuse."""
    if not isinstance(doc, dict) or type(doc.get("format")) is not int or doc["format"] != FORMAT:
        raise DatabaseError(f"not an ovslite database of format {FORMAT}")
    unknown = [k for k in doc if k not in ("format", "bridges")]
    if unknown:
        raise DatabaseError(f"unknown key {shown(unknown[0])}")
    try:
        check_bridges(doc.get("bridges"))
    except ValueError as exc:
        raise DatabaseError(str(exc)) from None
    return doc


def upgrade(doc) -> None:
    """Rewrite what older ovslite wrote and this one refuses, in place, before
    validation: `fdb-add` without --vlan used to store VLAN 0 whatever the port,
    an entry no frame ever used on a port that does not carry VLAN 0. Such an entry
    moves to the VLANs `fdb-add` now gives it (portconfig.static_vlans), which is
    what the user asked for. A bridge with anything malformed is left as it is, for
    validate() to refuse."""
    try:
        bridges = list(doc["bridges"].values())
    except (TypeError, KeyError, AttributeError):
        return
    for br in bridges:
        try:
            br["config"]["static-macs"] = _upgraded_statics(br["ports"], br["config"]["static-macs"])
        except Exception:  # untrusted data of any shape: validate() names the fault
            continue


def _upgraded_statics(ports: dict, statics: list) -> list:
    if not isinstance(statics, list):
        return statics
    taken = {(e["mac"], e["vlan"]) for e in statics}
    out = []
    for e in statics:
        settings = ports[e["port"]].get("settings", {})
        if e["vlan"] != 0 or portconfig.carries(settings, 0):
            out.append(e)
            continue
        moved = [v for v in portconfig.static_vlans(settings) if (e["mac"], v) not in taken]
        taken.update((e["mac"], v) for v in moved)
        out += [{**e, "vlan": v} for v in moved]
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def parse(raw: bytes) -> dict:
    """The JSON text of a database -> its document (not yet validated); ValueError if
    it is not JSON, or uses what JSON does not have (NaN, Infinity, 1e400)."""
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class ConfigDB:
    def __init__(self, path: str):
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        #: a write's temporary file: "." + the file's name + "." + mkstemp's 8 characters
        self.temp_prefix = "." + os.path.basename(path) + "."

    def remove_leftovers(self) -> list[str]:
        """Remove the temporary files of writes a kill interrupted; return their names.

        Only this database's (its own prefix and mkstemp's 8 random characters, in
        its directory): call it before the first write, while no other writer can be.
        """
        leftover = re.compile(re.escape(self.temp_prefix) + r"[a-z0-9_]{8}")
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []  # no directory yet: nothing left over
        removed = []
        for name in names:
            path = os.path.join(self.directory, name)
            if leftover.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
                try:
                    os.unlink(path)
                    removed.append(name)
                except FileNotFoundError:
                    pass
        return removed

    def load(self) -> dict:
        """The stored configuration, or an empty one if the file does not exist."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_SIZE + 1)
        except FileNotFoundError:
            return empty()
        except OSError as exc:
            raise DatabaseError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(raw) > MAX_SIZE:
            raise DatabaseError(f"{self.path} is corrupt: larger than {MAX_SIZE >> 20} MB")
        try:
            doc = parse(raw)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise DatabaseError(f"{self.path} is corrupt: {exc}") from None
        upgrade(doc)
        try:
            return validate(doc)
        except DatabaseError as exc:
            raise DatabaseError(f"{self.path} is corrupt: {exc}") from None

    def save(self, doc: dict, checked: bool = False) -> None:
        """Write `doc` atomically; `checked`: the caller has just validated it."""
        if not checked:
            validate(doc)
        data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
        directory = self.directory
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.temp_prefix, dir=directory)
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

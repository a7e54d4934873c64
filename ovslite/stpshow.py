"""A spanning tree's `show()` dict <-> flat text key/values, for the control protocol.

GET_STP carries each bridge's and each port's facts in an INFO kvlist (strings
both ways, like settings): nested keys are joined with '.', None is '', booleans
are true/false, numbers their decimal text. `unflatten` gives the client the
nested form back, numbers and booleans typed again, for `stp-show --format json`.
"""

from __future__ import annotations


def flatten(value: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(flatten(item, name + "."))
        elif item is None:
            out[name] = ""
        elif isinstance(item, bool):
            out[name] = "true" if item else "false"
        elif isinstance(item, float):
            out[name] = f"{item:.3f}"
        else:
            out[name] = str(item)
    return out


def _typed(text: str):
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def unflatten(flat: dict[str, str]) -> dict:
    out: dict = {}
    for key, text in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _typed(text)
    return out

"""Trace's result: the steps and outputs of one trace, and their one-line summary.

A Trace holds Steps (one decision each, in order) and Outputs (where the frame
leaves the switch). `result_dict` builds the JSON form from plain dicts, so
the daemon (Trace.as_dict) and the client (from_messages, on the control
protocol's messages) produce exactly the same thing.

Limits: a result is text for people plus a few structured fields (outputs,
drops); the step details are not meant to be parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Step kinds, in the order one bridge visit produces them.
KINDS = ("flow", "bridge", "ingress", "vlan", "learn", "lookup", "storm", "flood",
         "egress", "mtu", "output", "patch", "drop", "note", "inject", "mirror")



@dataclass
class Step:
    kind: str
    bridge: str
    port: str | None
    detail: str
    depth: int = 0  # bridges crossed (patch ports) before this one

    def as_dict(self) -> dict:
        return {"kind": self.kind, "bridge": self.bridge, "port": self.port,
                "depth": self.depth, "detail": self.detail}


@dataclass
class Output:
    bridge: str
    port: str
    vlan: int  # the VLAN inside the bridge
    tagged: bool  # the frame leaves with a tag (of `vlan`)

    def as_dict(self) -> dict:
        return {"bridge": self.bridge, "port": self.port, "vlan": self.vlan, "tagged": self.tagged}


@dataclass
class Trace:
    bridge: str
    in_port: str
    flow: str
    steps: list[Step] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    @property
    def drops(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "drop"]

    @property
    def drop_reason(self) -> str | None:
        """Why nothing leaves (None if something does)."""
        if self.outputs:
            return None
        return drop_reason([s.as_dict() for s in self.drops], self.bridge)

    @property
    def injected(self) -> bool:
        return any(s.kind == "inject" for s in self.steps)

    def as_dict(self) -> dict:
        """The JSON form; `from_messages` rebuilds exactly this from the protocol."""
        return result_dict(self.bridge, self.in_port, self.flow,
                           [s.as_dict() for s in self.steps], [o.as_dict() for o in self.outputs])


def result_dict(bridge: str, in_port: str, flow: str, steps: list[dict], outputs: list[dict]) -> dict:
    drops = [{"bridge": s["bridge"], "port": s["port"], "detail": s["detail"]}
             for s in steps if s["kind"] == "drop"]
    reason = None if outputs else drop_reason(drops, bridge)
    return {"bridge": bridge, "in_port": in_port, "flow": flow, "steps": steps,
            "outputs": outputs, "drops": drops, "drop_reason": reason,
            "injected": any(s["kind"] == "inject" for s in steps),
            "result": summary(outputs, reason, bridge)}


def drop_reason(drops: list[dict], bridge: str) -> str:
    if not drops:
        return "no output"
    return "; ".join(d["detail"] if d["bridge"] == bridge else f"{d['bridge']}: {d['detail']}"
                     for d in drops)


def output_name(out: dict, bridge: str) -> str:
    return out["port"] if out["bridge"] == bridge else f"{out['bridge']}:{out['port']}"


def output_form(out: dict) -> str:
    if out["tagged"]:
        return f"VLAN {out['vlan']} tagged"
    return f"VLAN {out['vlan']} untagged" if out["vlan"] else "untagged"


def summary(outputs: list[dict], reason: str | None, bridge: str) -> str:
    """'output: p2, p3 (VLAN 10 untagged), br2:p9 (VLAN 10 tagged)' or 'drop: REASON'.

    Consecutive outputs in the same form share one annotation.
    """
    if not outputs:
        return f"drop: {reason or 'no output'}"
    parts: list[str] = []
    group: list[str] = []
    for i, out in enumerate(outputs):
        group.append(output_name(out, bridge))
        form = output_form(out)
        if i + 1 == len(outputs) or output_form(outputs[i + 1]) != form:
            parts.append(f"{', '.join(group)} ({form})")
            group = []
    return "output: " + ", ".join(parts)


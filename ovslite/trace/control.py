"""Trace at the switch's edges: --generate, and the control protocol's TRACE request.

`trace_switch` traces a Flow on a running switch and, with --generate, injects
the frame for real (`inject`: Datapath.input with a tap on every port) and
compares where it left with the trace. `handle_request` is the control
server's TRACE handler; `to_messages`/`from_messages` carry a Trace over the
protocol, one message per step plus a final one.

Limits: --generate sends the frame for real (it is learned and counted); the
comparison covers the ports and VLAN tags of the outputs, not the bytes.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

from ..bridge import RESERVED_VID, Port
from ..vnet import parse_mac
from .flow import DEFAULT_DL_TYPE, Flow, build_packet, check_dl_type
from .result import Step, Trace, output_name, result_dict
from .walk import trace_packet


def inject(datapath, ports: Mapping[str, Port], in_port: Port, packet: bytes) -> list[dict]:
    """Datapath.input(in_port, [packet], 0) for real; returns where frames left the switch.

    Every port gets a tap for the duration of the call (removed afterwards), so
    what is returned is what the datapath handed to each non-patch netdev, in order.
    """
    seen: list[dict] = []
    taps = datapath.taps
    added = []
    for p in ports.values():
        if getattr(p.netdev, "deliver_batch", None) is not None:
            continue

        def tap(direction, packets, p=p):
            if direction == "out" and p.bridge is not None:
                for q in packets:
                    has_tag = q[22] == 0x81 and q[23] == 0
                    vid = (q[24] & 0x0F) << 8 | q[25] if has_tag else 0
                    seen.append({"bridge": p.bridge.name, "port": p.name, "vid": vid,
                                 "tagged": has_tag})

        taps.setdefault(p, []).append(tap)
        added.append((p, tap))
    try:
        datapath.input(in_port, [packet], 0)
    finally:
        for p, tap in added:
            lst = taps.get(p)
            if lst is not None and tap in lst:
                lst.remove(tap)
                if not lst:
                    del taps[p]
    return seen


def _matches(trace: Trace, seen: list[dict]) -> bool:
    want = [(o.bridge, o.port, o.tagged, o.vlan if o.tagged else 0) for o in trace.outputs]
    got = [(s["bridge"], s["port"], s["tagged"], s["vid"]) for s in seen]
    return want == got


def inject_step(trace: Trace, in_port: Port, seen: list[dict]) -> Step:
    br = in_port.bridge.name
    if seen:
        where = ", ".join(output_name(s, br) for s in seen)
        detail = f"injected on {in_port.name}; left the switch on {where}"
    else:
        detail = f"injected on {in_port.name}; left the switch nowhere"
    detail += " (as traced)" if _matches(trace, seen) else " (DIFFERS from the trace above)"
    return Step("inject", br, in_port.name, detail, 0)


# -- the switch and the control protocol ----------------------------------------


def trace_switch(switch, bridge: str, flow: Flow, generate: bool = False) -> Trace:
    """Trace `flow` on `switch` (SwitchError for an unknown bridge or port); inject if asked."""
    from ..switch import SwitchError

    br = switch.bridge(bridge)
    port = br.ports.get(flow.in_port)
    if port is None:
        raise SwitchError(errno.ENOENT, f"no port named {flow.in_port} on bridge {bridge}")
    packet = build_packet(flow)
    datapath = switch.datapath
    result = trace_packet(port, packet, datapath.clock(), switch.ports, flow)
    if generate:
        seen = inject(datapath, switch.ports, port, packet)
        result.steps.append(inject_step(result, port, seen))
    return result


def flow_from_request(values: dict) -> tuple[str, Flow, bool]:
    """The TRACE request's attributes -> (bridge, flow, generate); SwitchError if invalid."""
    from ..switch import SwitchError

    try:
        src, dst = parse_mac(values["dl_src"]), parse_mac(values["dl_dst"])
        vlan = values.get("vlan")
        if vlan is not None and not 0 <= vlan <= RESERVED_VID:
            raise ValueError(f"dl_vlan: VLAN {vlan} is out of range (0-{RESERVED_VID})")
        dl_type = check_dl_type(values.get("dl_type", DEFAULT_DL_TYPE))
    except ValueError as exc:
        raise SwitchError(errno.EINVAL, str(exc)) from None
    flow = Flow(values["port"], src, dst, vlan, dl_type)
    return values["bridge"], flow, bool(values.get("generate"))


def to_messages(trace: Trace) -> list[dict]:
    """TRACE reply: one message per step, then a 'final' one with the outputs."""
    msgs = [{"trace_kind": s.kind, "bridge": s.bridge, "port": s.port,
             "trace_depth": s.depth, "trace_detail": s.detail} for s in trace.steps]
    msgs.append({"trace_kind": "final", "bridge": trace.bridge, "port": trace.in_port,
                 "trace_detail": trace.flow, "reason": trace.drop_reason,
                 "trace_outputs": [{"bridge": o.bridge, "port": o.port, "vlan": o.vlan,
                                    "trace_tagged": o.tagged} for o in trace.outputs]})
    return msgs


def from_messages(msgs: list[dict]) -> dict:
    """The client side of to_messages: the same dict as Trace.as_dict()."""
    steps = [{"kind": v.get("trace_kind", ""), "bridge": v.get("bridge", ""),
              "port": v.get("port"), "depth": v.get("trace_depth", 0),
              "detail": v.get("trace_detail", "")}
             for v in msgs if v.get("trace_kind") != "final"]
    final = next((v for v in msgs if v.get("trace_kind") == "final"), {})
    outputs = [{"bridge": o.get("bridge", ""), "port": o.get("port", ""), "vlan": o.get("vlan", 0),
                "tagged": bool(o.get("trace_tagged"))} for o in final.get("trace_outputs", [])]
    return result_dict(final.get("bridge", ""), final.get("port", ""),
                       final.get("trace_detail", ""), steps, outputs)


def handle_request(switch, values: dict) -> list[dict]:
    """The control server's TRACE handler: the reply messages of the dump."""
    bridge, flow, generate = flow_from_request(values)
    return to_messages(trace_switch(switch, bridge, flow, generate))

"""Trace: what the switch would do with one frame, decision by decision, sending nothing.

`ovslite-ctl trace BR in_port=P dl_src=MAC dl_dst=MAC [dl_vlan=N] [dl_type=T]`
(after Open vSwitch's ofproto/trace). A frame is built from the fields and
walked through the same decisions the datapath takes: ingress port state,
ingress VLAN, learning, the MAC table lookup or the flood list, storm control,
egress VLAN form and MTU per output port, and for a patch port the peer's
bridge, recursively, up to the datapath's MAX_DEPTH bridges.

Trace cannot disagree with forwarding because it asks the forwarding core
rather than re-implementing it: Bridge.ingress_vlan for the ingress VLAN,
Bridge.reach for who may receive (unicast, unknown, multicast and broadcast
lists, i.e. port state, isolation, VLAN membership and the flood flags),
Bridge.emit for the exact bytes each output gets, the MAC table's entries
for the lookup. What trace adds is only the explanation: why a port is not in
a flood list, which entry was hit, how old it is.

Nothing is changed: no entry is learned, no counter moves, no storm-control
token is taken (Bridge.reach may fill its cache, which is not state anyone can
observe). What learning and storm control *would* do inside this one trace is
kept in a private overlay, so a frame that comes back to a bridge through a
patch loop meets the table and the token bucket as the datapath would leave
them. `--generate` then injects the frame for real (Datapath.input on the
ingress port: learned, counted, sent) and reports where it actually left.

Limits: the clock is read once per trace (the datapath reads it once per
bridge crossed); evictions when a full table learns are predicted for the
first one per table, a second one in the same trace is approximate; a trace
stops after MAX_STEPS steps (a frame flooded into several patch loops fans
out exponentially, in the datapath too).

The package, by concern: flow (the flow the user types, the frame built from
it), walk (Tracer: the decisions, bridge by bridge), explain (why a port is or
is not reached, in words), result (Trace, Step, Output and the summary line),
control (--generate and the TRACE request). Everything is importable from
`ovslite.trace`, as when it was one module.
"""

from .control import (
    flow_from_request,
    from_messages,
    handle_request,
    inject,
    inject_step,
    to_messages,
    trace_switch,
)
from .explain import (
    LINK_LOCAL,
    SOURCE_DROPS,
    egress_form,
    link_local_name,
    not_reached,
    vlan_ranges,
    vlan_role,
)
from .flow import (
    DEFAULT_DL_TYPE,
    FIELDS,
    MIN_FRAME,
    REQUIRED,
    Flow,
    build_packet,
    check_dl_type,
    parse_dl_type,
    parse_flow,
    parse_vlan,
)
from .result import (
    KINDS,
    Output,
    Step,
    Trace,
    drop_reason,
    output_form,
    output_name,
    result_dict,
    summary,
)
from .walk import MAX_STEPS, Tracer, trace_packet

__all__ = [
    "DEFAULT_DL_TYPE", "FIELDS", "KINDS", "LINK_LOCAL", "MAX_STEPS", "MIN_FRAME", "REQUIRED",
    "SOURCE_DROPS", "Flow", "Output", "Step", "Trace", "Tracer", "build_packet", "check_dl_type",
    "drop_reason", "egress_form", "flow_from_request", "from_messages", "handle_request",
    "inject", "inject_step", "link_local_name", "not_reached", "output_form", "output_name",
    "parse_dl_type", "parse_flow", "parse_vlan", "result_dict", "summary", "to_messages",
    "trace_packet", "trace_switch", "vlan_ranges", "vlan_role",
]

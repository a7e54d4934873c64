"""RSTP machines around what a port sends: Port Transmit (17.26), Port Protocol
Migration (17.24), Bridge Detection (17.25) and Topology Change (17.31).

Same conventions as rstp_port: one transition per call, standard names.
Protocol migration is how an RSTP bridge falls back to 802.1D: a port that
hears a configuration or TCN BPDU while sensing stops sending RST BPDUs
(sendRSTP false) and sends configuration and TCN BPDUs instead; it goes back
to RST BPDUs when it hears one after MigrateTime, when its link comes back, or
on an mcheck. Topology change flushes the MAC entries learned on the other
ports (fdbFlush: a "flush" event) rather than aging them fast.
"""

from __future__ import annotations

from .bpdu import (
    CONFIG,
    FLAG_AGREEMENT,
    FLAG_FORWARDING,
    FLAG_LEARNING,
    FLAG_PROPOSAL,
    FLAG_TC,
    FLAG_TC_ACK,
    ROLE_CODE,
    ROLE_SHIFT,
    RST,
    TCN,
    Bpdu,
    seconds_to_wire,
)
from .rstp_port import MIGRATE_TIME, Port


def protocol_migration(br, p: Port) -> bool:
    if p.ppm_init or (p.ppm == "CHECKING_RSTP" and p.mdelay_while != MIGRATE_TIME
                      and not p.enabled):
        p.ppm_init = False
        return _checking_rstp(p)
    if p.ppm == "CHECKING_RSTP":
        if p.mdelay_while != 0:
            return False
        return _sensing(p)
    if p.ppm == "SENSING":
        if not p.enabled or p.mcheck or (not p.send_rstp and p.rcvd_rstp):
            return _checking_rstp(p)
        if p.send_rstp and p.rcvd_stp:
            p.ppm = "SELECTING_STP"
            p.send_rstp = False
            p.mdelay_while = MIGRATE_TIME
            return True
        return False
    if p.mdelay_while == 0 or not p.enabled or p.mcheck:  # SELECTING_STP
        return _sensing(p)
    return False


def _checking_rstp(p: Port) -> bool:
    changed = (p.ppm, p.mcheck, p.send_rstp, p.mdelay_while) != (
        "CHECKING_RSTP", False, True, MIGRATE_TIME)
    p.ppm, p.mcheck, p.send_rstp, p.mdelay_while = "CHECKING_RSTP", False, True, MIGRATE_TIME
    return changed


def _sensing(p: Port) -> bool:
    p.ppm = "SENSING"
    p.rcvd_rstp = p.rcvd_stp = False
    return True


def bridge_detection(br, p: Port) -> bool:
    admin, auto = p.params.admin_edge, p.params.auto_edge
    if p.bdm == "EDGE":
        if (not p.enabled and not admin) or not p.oper_edge:
            p.bdm, p.oper_edge = "NOT_EDGE", False
            return True
        return False
    if (not p.enabled and admin) or (
            p.edge_delay_while == 0 and auto and p.send_rstp and p.proposing):
        p.bdm, p.oper_edge = "EDGE", True
        return True
    if p.oper_edge:  # set by a parameter change: keep BDM's view
        p.oper_edge = False
        return True
    return False


def port_transmit(br, p: Port) -> bool:
    if p.ptx_init or not p.enabled:  # TRANSMIT_INIT, then IDLE
        hello = br.hello_time(p)
        changed = p.ptx_init or not p.new_info or p.tx_count or p.hello_when != hello
        p.ptx_init, p.new_info, p.tx_count, p.hello_when = False, True, 0, hello
        return bool(changed)
    if not p.selected or p.updt_info:
        return False
    if p.hello_when == 0:
        p.new_info = p.new_info or p.role == "designated" or (
            p.role == "root" and p.tc_while != 0)
        p.hello_when = br.hello_time(p)
        return True
    if not p.new_info or p.tx_count >= br.params.transmit_hold_count:
        return False
    if p.send_rstp:
        br.send(p, rst_bpdu(br, p))
        p.tc_ack = False
    elif p.role == "designated":
        br.send(p, config_bpdu(br, p))
        p.tc_ack = False
    elif p.role == "root":
        br.send(p, Bpdu(TCN))
    else:
        return False
    p.new_info = False
    p.tx_count += 1
    p.hello_when = br.hello_time(p)  # back in IDLE
    return True


def _vector_fields(p: Port) -> dict:
    root, cost, bridge, port_id = p.designated_priority
    age, max_age, hello, fwd = p.designated_times
    return {"root_id": root, "root_path_cost": cost, "bridge_id": bridge, "port_id": port_id,
            "message_age": seconds_to_wire(age), "max_age": seconds_to_wire(max_age),
            "hello_time": seconds_to_wire(hello), "forward_delay": seconds_to_wire(fwd)}


def config_bpdu(br, p: Port) -> Bpdu:
    flags = (FLAG_TC if p.tc_while else 0) | (FLAG_TC_ACK if p.tc_ack else 0)
    return Bpdu(CONFIG, flags, **_vector_fields(p))


def rst_bpdu(br, p: Port) -> Bpdu:
    flags = ROLE_CODE[p.role if p.role != "disabled" else "designated"] << ROLE_SHIFT
    for bit, on in ((FLAG_TC, p.tc_while), (FLAG_PROPOSAL, p.proposing),
                    (FLAG_LEARNING, p.learning), (FLAG_FORWARDING, p.forwarding),
                    (FLAG_AGREEMENT, p.agree)):
        if on:
            flags |= bit
    return Bpdu(RST, flags, version=2, **_vector_fields(p))


def topology_change(br, p: Port) -> bool:
    if p.tcm_init:
        p.tcm_init = False
        p.tcm, p.fdb_flush, p.tc_while, p.tc_ack = "INACTIVE", False, 0, False
        return True
    received = p.rcvd_tc or p.rcvd_tcn or p.rcvd_tc_ack or p.tc_prop
    active_role = p.role in ("root", "designated")
    if p.tcm == "INACTIVE":
        if p.learn:
            return _tc_learning(p)
        return False
    if p.tcm == "LEARNING":
        if active_role and p.forward and not p.oper_edge:
            p.tcm = "ACTIVE"  # through DETECTED
            new_tc_while(br, p)
            br.set_tc_prop_tree(p)
            p.new_info = True
            br.note_tc(received=False)
            return True
        if received:
            return _tc_learning(p)
        if not active_role and not (p.learn or p.learning):
            p.tcm = "INACTIVE"
            p.fdb_flush, p.tc_while, p.tc_ack = False, 0, False
            br.flush([p])
            return True
        return False
    # ACTIVE
    if not active_role or p.oper_edge:
        return _tc_learning(p)
    if p.rcvd_tcn or p.rcvd_tc:
        if p.rcvd_tcn:
            new_tc_while(br, p)
        p.rcvd_tcn = p.rcvd_tc = False
        if p.role == "designated":
            p.tc_ack = True
        br.note_tc(received=True)
        br.set_tc_prop_tree(p)
        return True
    if p.tc_prop and not p.oper_edge:
        new_tc_while(br, p)
        br.flush([p])
        p.tc_prop = False
        return True
    if p.rcvd_tc_ack:
        p.tc_while, p.rcvd_tc_ack = 0, False
        return True
    return False


def _tc_learning(p: Port) -> bool:
    p.tcm = "LEARNING"
    p.rcvd_tc = p.rcvd_tcn = p.rcvd_tc_ack = p.tc_prop = False
    return True


def new_tc_while(br, p: Port) -> None:
    if p.tc_while == 0:
        if p.send_rstp:
            p.tc_while = br.hello_time(p) + 1
            p.new_info = True
        else:
            _, max_age, _, fwd = br.root_times
            p.tc_while = max_age + fwd

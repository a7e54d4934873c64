"""RSTP per-port state machines, 802.1D-2004 clause 17 (17.23-17.29).

Each machine is a function `machine(bridge, port) -> bool` that makes at most
one transition and says whether it did; `Rstp.run` calls them all until none
moves (the standard's "all machines run until quiescent"). The states and
variables keep the standard's names (camelCase turned to snake_case), so each
transition can be checked against the figure it comes from. Three fixes that
802.1Q-2005 made to the 2004 text are taken: a TCN BPDU sets rcvdTcn through
setTcFlags, recordDispute marks the port disputed (DESIGNATED_DISCARD) so a
unidirectional link does not make a loop, and allSynced leaves out the root
port (`Rstp.all_synced`). Port Receive (17.23) is
`Rstp.received`, which runs these machines right after recording a BPDU.
Times are whole seconds; timers are decremented once a second by `Rstp`.
"""

from __future__ import annotations

from .bpdu import (
    CONFIG,
    FLAG_AGREEMENT,
    FLAG_LEARNING,
    FLAG_PROPOSAL,
    FLAG_TC,
    FLAG_TC_ACK,
    RST,
    TCN,
)
from .common import MAC_BITS, PortBase

MIGRATE_TIME = 3
TIMERS = ("hello_when", "tc_while", "fd_while", "rcvd_info_while", "rr_while", "rb_while",
          "mdelay_while", "edge_delay_while")


class Port(PortBase):
    def __init__(self, *args):
        super().__init__(*args)
        self.port_id = 0
        self.path_cost = 200000
        self.begin()

    def begin(self) -> None:
        """BEGIN for this port: every machine back to its initial state."""
        for timer in TIMERS:
            setattr(self, timer, 0)
        self.tx_count = 0
        self.info_is = "disabled"
        self.role = self.selected_role = "disabled"
        self.port_priority = self.msg_priority = self.designated_priority = (0, 0, 0, 0)
        self.port_times = self.msg_times = self.designated_times = (0, 20, 2, 15)
        self.msg = None
        self.selected = self.updt_info = False
        self.reselect = True
        self.proposing = self.proposed = self.agree = self.agreed = False
        self.sync = self.synced = self.re_root = self.disputed = False
        self.learn = self.learning = self.forward = self.forwarding = False
        self.rcvd_msg = self.rcvd_rstp = self.rcvd_stp = False
        self.rcvd_tc = self.rcvd_tcn = self.rcvd_tc_ack = self.tc_prop = self.tc_ack = False
        self.new_info = self.send_rstp = self.mcheck = False
        self.admin_edge = self.oper_edge = self.params.admin_edge
        self.fdb_flush = False
        self.pim = "DISABLED"
        self.prt = "INIT_PORT"
        self.tcm = "INACTIVE"
        self.ppm = "CHECKING_RSTP"
        self.bdm = "EDGE" if self.params.admin_edge else "NOT_EDGE"
        self.prt_init = True
        self.ppm_init = self.ptx_init = self.tcm_init = True


def vector_compare(msg, port) -> str:
    """17.6: "superior", "same" or "inferior" (a message from the same port is superior)."""
    if msg == port:
        return "same"
    if msg < port:
        return "superior"
    if (msg[2] & MAC_BITS) == (port[2] & MAC_BITS) and (msg[3] & 0xFFF) == (port[3] & 0xFFF):
        return "superior"
    return "inferior"


# -- Port Information (17.27) --------------------------------------------------------

def rcv_info(p: Port) -> str:
    bpdu = p.msg
    if bpdu.kind == TCN:
        return "other"
    role = "designated" if bpdu.kind == CONFIG else bpdu.role
    cmp = vector_compare(p.msg_priority, p.port_priority)
    if role == "designated":
        if cmp == "superior" or (cmp == "same" and p.msg_times != p.port_times):
            return "superior_designated"
        return "repeated_designated" if cmp == "same" else "inferior_designated"
    if role in ("root", "alternate") and cmp in ("same", "inferior"):
        return "inferior_root_alternate"
    return "other"


def set_tc_flags(p: Port) -> None:
    bpdu = p.msg
    if bpdu.kind == TCN:
        p.rcvd_tcn = True
        return
    if bpdu.flags & FLAG_TC:
        p.rcvd_tc = True
    if bpdu.flags & FLAG_TC_ACK:
        p.rcvd_tc_ack = True


def better_or_same_info(p: Port, new_info_is: str) -> bool:
    if new_info_is == "received":
        return p.info_is == "received" and vector_compare(
            p.msg_priority, p.port_priority) in ("superior", "same")
    return p.info_is == "mine" and p.designated_priority <= p.port_priority


def updt_rcvd_info_while(p: Port) -> None:
    age, max_age, hello, _ = p.port_times
    p.rcvd_info_while = 3 * hello if age + 1 <= max_age else 0


def port_information(br, p: Port) -> bool:
    if not p.enabled and p.info_is != "disabled" and p.pim != "DISABLED":
        p.pim = "DISABLED"
        p.rcvd_msg = p.proposing = p.proposed = p.agree = p.agreed = False
        p.rcvd_info_while = 0
        p.info_is = "disabled"
        p.reselect, p.selected = True, False
        return True
    if p.pim == "DISABLED":
        if p.rcvd_msg:
            p.rcvd_msg = False
            return True
        if p.enabled:
            p.pim, p.info_is = "AGED", "aged"
            p.reselect, p.selected = True, False
            return True
        return False
    if p.selected and p.updt_info:  # from AGED or CURRENT: UPDATE, then CURRENT
        p.proposing = p.proposed = False
        p.agreed = p.agreed and better_or_same_info(p, "mine")
        p.synced = p.synced and p.agreed
        p.port_priority, p.port_times = p.designated_priority, p.designated_times
        p.updt_info = False
        p.info_is = "mine"
        p.new_info = True
        p.pim = "CURRENT"
        return True
    if p.pim != "CURRENT":
        return False
    if p.info_is == "received" and p.rcvd_info_while == 0 and not p.updt_info \
            and not p.rcvd_msg:
        p.pim, p.info_is = "AGED", "aged"
        p.reselect, p.selected = True, False
        return True
    if not (p.rcvd_msg and not p.updt_info):
        return False
    info = rcv_info(p)
    bpdu = p.msg
    if info == "superior_designated":
        p.agreed = p.proposing = False
        record_proposal(p)
        set_tc_flags(p)
        p.agree = p.agree and better_or_same_info(p, "received")
        p.port_priority, p.port_times = p.msg_priority, p.msg_times
        updt_rcvd_info_while(p)
        p.info_is = "received"
        p.reselect, p.selected = True, False
    elif info == "repeated_designated":
        record_proposal(p)
        set_tc_flags(p)
        updt_rcvd_info_while(p)
    elif info == "inferior_designated":
        if bpdu.kind == RST and bpdu.flags & FLAG_LEARNING:  # recordDispute
            p.disputed, p.agreed = True, False
    elif info == "inferior_root_alternate":
        record_agreement(br, p)
        set_tc_flags(p)
    elif bpdu.kind == TCN:
        set_tc_flags(p)
    p.rcvd_msg = False
    return True


def record_proposal(p: Port) -> None:
    if p.msg.kind == RST and p.msg.role == "designated" and p.msg.flags & FLAG_PROPOSAL:
        p.proposed = True


def record_agreement(br, p: Port) -> None:
    if p.params.point_to_point and p.msg.kind == RST and p.msg.flags & FLAG_AGREEMENT:
        p.agreed, p.proposing = True, False
    else:
        p.agreed = False


# -- Port Role Transitions (17.29) -----------------------------------------------------

def port_role_transitions(br, p: Port) -> bool:
    if p.prt_init:
        p.prt_init = False
        p.role = "disabled"
        p.learn = p.forward = p.synced = False
        p.sync = p.re_root = True
        p.rr_while, p.fd_while, p.rb_while = br.fwd_delay(p), br.max_age(p), 0
        p.prt = "DISABLE_PORT"
        return True
    if not p.selected or p.updt_info:
        return False
    if p.role != p.selected_role:
        p.role = p.selected_role
        p.prt = {"disabled": "DISABLE_PORT", "root": "ROOT_PORT", "designated":
                 "DESIGNATED_PORT"}.get(p.role, "BLOCK_PORT")
        if p.role == "root":
            p.rr_while = br.fwd_delay(p)
        elif p.role in ("alternate", "backup", "disabled"):
            p.learn = p.forward = False
        return True
    if p.role == "disabled":
        return _disabled_role(br, p)
    if p.role == "root":
        return _root_role(br, p)
    if p.role == "designated":
        return _designated_role(br, p)
    return _alternate_role(br, p)


def _disabled_role(br, p: Port) -> bool:
    return _blocked(p, "DISABLE_PORT", "DISABLED_PORT", br.max_age(p))


def _blocked(p: Port, entry: str, settled: str, fd_while: int) -> bool:
    """DISABLE_PORT then DISABLED_PORT, or BLOCK_PORT then ALTERNATE_PORT."""
    if p.prt == entry:
        if p.learning or p.forwarding:
            return False
        p.prt = settled
    elif not (p.fd_while != fd_while or p.sync or p.re_root or not p.synced):
        return False
    p.fd_while, p.synced, p.rr_while = fd_while, True, 0
    p.sync = p.re_root = False
    return True


def _proposal_agreement(br, p: Port) -> bool:
    if p.proposed and not p.agree:
        br.set_sync_tree()
        p.proposed = False
        return True
    if (br.all_synced(p) and not p.agree) or (p.proposed and p.agree):
        p.proposed = False
        if p.role == "root":
            p.sync = False
        p.agree = p.new_info = True
        return True
    return False


def _root_role(br, p: Port) -> bool:
    if _proposal_agreement(br, p):
        return True
    if not p.forward and not p.re_root:
        br.set_re_root_tree()
        return True
    if p.re_root and p.forward:
        p.re_root = False
        return True
    if p.rr_while != br.fwd_delay(p):
        p.rr_while = br.fwd_delay(p)
        return True
    may = p.fd_while == 0 or (br.re_rooted(p) and p.rb_while == 0)
    if may and not p.learn:
        p.fd_while, p.learn = br.forward_delay(p), True
        return True
    if may and p.learn and not p.forward:
        p.fd_while, p.forward = 0, True
        return True
    return False


def _designated_role(br, p: Port) -> bool:
    if not p.forward and not p.agreed and not p.proposing and not p.oper_edge:
        p.proposing, p.new_info = True, True
        p.edge_delay_while = br.edge_delay(p)
        return True
    if not p.synced and ((not p.learning and not p.forwarding) or p.agreed or p.oper_edge) \
            or (p.sync and p.synced):
        p.rr_while, p.synced, p.sync = 0, True, False
        return True
    if p.rr_while == 0 and p.re_root:
        p.re_root = False
        return True
    if ((p.sync and not p.synced) or (p.re_root and p.rr_while != 0) or p.disputed) \
            and not p.oper_edge and (p.learn or p.forward):
        p.learn = p.forward = p.disputed = False
        p.fd_while = br.forward_delay(p)
        return True
    may = (p.fd_while == 0 or p.agreed or p.oper_edge) and (p.rr_while == 0 or not p.re_root) \
        and not p.sync
    if may and not p.learn:
        p.learn, p.fd_while = True, br.forward_delay(p)
        return True
    if may and p.learn and not p.forward:
        p.forward, p.fd_while, p.agreed = True, 0, p.send_rstp
        return True
    return False


def _alternate_role(br, p: Port) -> bool:
    if p.prt != "BLOCK_PORT":
        if _proposal_agreement(br, p):
            return True
        if p.role == "backup" and p.rb_while != 2 * br.hello_time(p):
            p.rb_while = 2 * br.hello_time(p)
            return True
    return _blocked(p, "BLOCK_PORT", "ALTERNATE_PORT", br.forward_delay(p))


def port_state_transition(br, p: Port) -> bool:
    """17.30: the datapath follows learn and forward at once."""
    if (p.learning, p.forwarding) == (p.learn, p.forward):
        return False
    p.learning, p.forwarding = p.learn, p.forward
    return True

"""Garbage on the control socket: the daemon answers or closes, never hangs,
and goes on serving ovslite-ctl with its configuration intact."""

from __future__ import annotations

import errno
import random
import socket
import struct

import pytest

from .netns import why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
REPLY_TIMEOUT = 3.0

_rng = random.Random(0x0715)

GARBAGE = {
    "random-bytes": bytes(_rng.getrandbits(8) for _ in range(61)),
    "truncated-header": NLMSGHDR.pack(16, 0x10, NLM_F_REQUEST, 1, 0)[:7],
    "length-beyond-datagram": NLMSGHDR.pack(4096, 0x10, NLM_F_REQUEST, 1, 0) + b"\x00" * 8,
    "length-below-header": NLMSGHDR.pack(8, 0x10, NLM_F_REQUEST, 1, 0),
    "unknown-type": NLMSGHDR.pack(16, 0x7ABC, NLM_F_REQUEST, 1, 0),
    "zeros-100k": bytes(100 * 1024),
    "header-then-garbage-attrs": NLMSGHDR.pack(40, 0x10, NLM_F_REQUEST, 1, 0) + b"\xff" * 24,
}


def send_garbage(path: str, payload: bytes) -> str:
    """Send one datagram; return how the daemon reacted (an error answer, or closed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(REPLY_TIMEOUT)
    try:
        s.connect(path)
        try:
            s.send(payload)
        except OSError as exc:
            if exc.errno in (errno.EMSGSIZE, errno.ENOBUFS):
                pytest.skip(f"this kernel cannot send a {len(payload)}-byte datagram")
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                return "closed"
            raise
        try:
            reply = s.recv(65536)
        except TimeoutError:
            pytest.fail(f"no answer and no close within {REPLY_TIMEOUT}s: the daemon hangs")
        except ConnectionResetError:
            return "closed"
        if not reply:
            return "closed"
        assert len(reply) >= NLMSGHDR.size + 4, f"short answer {reply!r}"
        length, mtype, _, _, _ = NLMSGHDR.unpack_from(reply)
        (error,) = struct.unpack_from("=i", reply, NLMSGHDR.size)
        assert length == len(reply), f"answer's nlmsg_len {length} != its size {len(reply)}"
        assert mtype == NLMSG_ERROR and error < 0, (
            f"garbage got a non-error answer: type {mtype}, error {error}")
        return f"answered errno {-error}"
    finally:
        s.close()


@pytest.fixture
def configured(daemon, net):
    br = net.name("br")
    h1 = net.add_host("h1")
    daemon.ctl("add-br", br)
    daemon.ctl("add-port", br, h1.port)
    return daemon, br, daemon.ctl("show").stdout


@pytest.mark.parametrize("payload", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_datagram(configured, payload):
    daemon, br, show = configured
    how = send_garbage(daemon.socket, payload)
    print(f"{len(payload)} bytes of garbage: {how}")
    assert daemon.running, f"the daemon died:\n{daemon.stderr()}"
    assert not daemon.errors_logged(), f"errors logged: {daemon.errors_logged()}"
    assert daemon.ctl("list-br").stdout.split() == [br]
    assert daemon.ctl("show").stdout == show


def test_garbage_burst_then_normal_service(configured):
    """All of it, several times over, on one connection and on many."""
    daemon, br, show = configured
    for _ in range(3):
        for payload in GARBAGE.values():
            send_garbage(daemon.socket, payload)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(REPLY_TIMEOUT)
    try:
        s.connect(daemon.socket)
        for payload in GARBAGE.values():
            try:
                s.send(payload)
            except OSError:
                break  # closed on us: allowed
    finally:
        s.close()
    # Connections that never send anything and are dropped half-way.
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(20)]
    for c in idle:
        c.connect(daemon.socket)
    assert daemon.ctl("list-br").stdout.split() == [br]
    for c in idle:
        c.close()
    assert daemon.running
    assert not daemon.errors_logged(), f"errors logged: {daemon.errors_logged()}"
    assert daemon.ctl("show").stdout == show


# -- well-framed requests with fuzzed contents ----------------------------------------
# Only the wire framing is assumed here (nlmsghdr type 0x20, genlmsghdr, nlattrs),
# and only commands that cannot change the configuration when they succeed are
# used (the get commands, deletions of random names, unknown command numbers),
# so "configuration intact" still holds afterwards.
OVSLITE_FAMILY = 0x20
NLM_F_ACK = 0x4
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
KNOWN_CMDS = (1, 11, 12, 21, 22, 30)  # get-version, del-br, get-br, del-port, get-port, get-fdb
OTHER_CMDS = (0, 13, 33, 99, 255)
FUZZ_SEED = 20240715
FUZZ_COUNT = 500


def _attr(rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.choice((0, 1, 2, 4, 8, rng.randrange(40))))
    if rng.random() < 0.3:  # nested: attributes inside, some of them broken
        payload = b"".join(_attr(rng) for _ in range(rng.randrange(3))) + payload[:3]
    kind = rng.randrange(22) | (NLA_F_NESTED if rng.random() < 0.2 else 0)
    length = 4 + len(payload)
    r = rng.random()
    if r < 0.1:
        length = rng.randrange(4)  # shorter than an attribute header
    elif r < 0.2:
        length += rng.randrange(1, 600)  # beyond the message
    pad = b"\0" * (-len(payload) % 4)
    return struct.pack("=HH", length & 0xFFFF, kind) + payload + pad


def fuzzed_request(rng: random.Random, seq: int) -> bytes:
    cmd = rng.choice(KNOWN_CMDS if rng.random() < 0.85 else OTHER_CMDS)
    version = 1 if rng.random() < 0.9 else rng.randrange(256)
    body = struct.pack("=BBH", cmd, version, 0)
    body += b"".join(_attr(rng) for _ in range(rng.randrange(5)))
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), OVSLITE_FAMILY,
                         NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def test_fuzzed_requests_each_get_an_answer(configured):
    """Every request ends in an error/ack or, for a dump, NLMSG_DONE; seeded, so replayable."""
    daemon, br, show = configured
    rng = random.Random(FUZZ_SEED)
    kinds: dict[str, int] = {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(REPLY_TIMEOUT)
    try:
        s.connect(daemon.socket)
        for seq in range(1, FUZZ_COUNT + 1):
            req = fuzzed_request(rng, seq)
            s.send(req)
            while True:
                try:
                    reply = s.recv(1 << 17)
                except TimeoutError:
                    pytest.fail(f"request {seq} ({req.hex()}) got no final answer "
                                f"within {REPLY_TIMEOUT}s")
                assert reply, f"daemon closed the connection after request {seq} ({req.hex()})"
                length, mtype, _, rseq, _ = NLMSGHDR.unpack_from(reply)
                assert length == len(reply) and rseq == seq, (
                    f"request {seq}: bad answer header {reply[:16].hex()}")
                if mtype == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", reply, NLMSGHDR.size)
                    kinds[f"errno {-error}"] = kinds.get(f"errno {-error}", 0) + 1
                    assert error != -5, f"request {seq} ({req.hex()}) hit an internal error (EIO)"
                    break
                if mtype == NLMSG_DONE:
                    kinds["dump"] = kinds.get("dump", 0) + 1
                    break
    finally:
        s.close()
    print(f"{FUZZ_COUNT} fuzzed requests: {dict(sorted(kinds.items()))}")
    assert daemon.running, f"the daemon died:\n{daemon.stderr()}"
    assert "Traceback" not in daemon.stderr(), daemon.stderr()
    assert not daemon.errors_logged(), f"errors logged: {daemon.errors_logged()}"
    assert daemon.ctl("list-br").stdout.split() == [br]
    assert daemon.ctl("show").stdout == show

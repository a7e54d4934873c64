"""The Internet checksum (RFC 1071), for GRE's optional checksum and inner L4 checksums.

Design: a buffer read as one big-endian integer is congruent, modulo 0xFFFF, to
the ones'-complement sum of its 16-bit words (2**16 == 1 mod 0xFFFF), so the
sum of a 64 KB segment is one `int.from_bytes` and one `%`, both in C, instead
of a Python loop over 32,768 words. The only care needed is ones'-complement
"negative zero": a non-zero buffer whose words sum to 0xFFFF.

Limits: big-endian sums only (the wire's order); buffers up to what Python's
ints hold comfortably (any frame).
"""

from __future__ import annotations


def ones_sum(data, initial: int = 0) -> int:
    """Ones'-complement 16-bit sum of `data` (odd length padded with a zero byte) plus `initial`."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return fold(value + initial)


def fold(value: int) -> int:
    """A non-negative sum of 16-bit words, folded to 16 bits ones'-complement style."""
    folded = value % 0xFFFF
    return 0xFFFF if folded == 0 and value else folded


def checksum(data, initial: int = 0) -> int:
    """The Internet checksum of `data` (as stored in a header): complement of ones_sum."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 (4-byte addresses) or IPv6 (16-byte) pseudo-header."""
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length

"""ovslite.heap: the glibc trim threshold that keeps GSO buffers off brk()."""

import platform

import pytest

from ovslite import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_is_accepted_by_glibc():
    assert heap.tune()

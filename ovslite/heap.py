"""glibc heap tuning for the dataplane.

A GSO frame is read into a fresh 64 KB buffer and freed once sent. With
glibc's default trim threshold (128 KB, adjusted upwards only by mmap'ed
blocks, which these are not), freeing the buffers at the top of the heap
gives the memory back with brk(), and the next frames take it again: a
syscall and fresh zeroed pages per few frames. Keeping up to TRIM_THRESHOLD
of free heap avoids that; it costs at most that much RSS after a burst.

Measured (iperf3, one TCP stream through one bridge, 2 vCPUs): 11.1-12.4
Gbit/s in five runs with the default, 11.8-13.6 in ten with a larger
threshold (set here or through MALLOC_TRIM_THRESHOLD_).

`trim()` gives free heap back at once (malloc_trim(0), which also releases
whole free pages inside the heap, not only at its top): the control server
calls it after a long dump, whose many small freed objects the threshold
alone would keep resident (issue #12). It costs a few ms on a 100 MB heap.
Elsewhere than glibc, nothing is done.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
TRIM_THRESHOLD = 8 * 1024 * 1024


def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def trim() -> bool:
    """Return free heap memory to the system now; False if this libc cannot."""
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    return bool(malloc_trim(0))


def tune() -> bool:
    """Apply the settings above; False if this libc has no mallopt()."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

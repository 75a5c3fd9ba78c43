"""Keep long media runs' memory flat. glibc raises its mmap threshold each time a large block is freed, after
which frame-sized buffers (0.8 MB a frame at 512², 6 MB at 1080p) come from the heap, whose fragments it does not
return: a dub's memory then creeps up frame after frame. A fixed threshold keeps each such buffer mapped on its own
and handed back to the system when freed.

Real-time work (live mode) wants the opposite: its threads allocate buffers of 0.2 to 4 MB every frame, and
mapping each one (zeroed pages, and unmapping that interrupts every core running the process) cut live frames per
second by half. ``realtime_allocations`` lifts the threshold while it runs and puts back what was held."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3       # mallopt's parameter number (glibc's malloc.h)
THRESHOLD = 128 * 1024      # glibc's own starting value, held fixed
REALTIME_THRESHOLD = 32 * 1024 * 1024   # glibc's largest on 64-bit: every per-frame buffer from the heap
_held = False


def _mallopt(threshold: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def hold_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold for this process; False (and nothing changed) on other C libraries."""
    global _held
    _held = _mallopt(THRESHOLD)
    return _held


def realtime_allocations(on: bool) -> None:
    """On: per-frame buffers come from the heap (see the module's docstring); off: the held threshold again, when
    one was held."""
    if _held:
        _mallopt(REALTIME_THRESHOLD if on else THRESHOLD)

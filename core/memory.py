"""Keep long media runs' memory flat. glibc raises its mmap threshold each time a large block is freed, after
which frame-sized buffers (0.8 MB a frame at 512², 6 MB at 1080p) come from the heap, whose fragments it does not
return: a dub's memory then creeps up frame after frame. A fixed threshold keeps each such buffer mapped on its own
and handed back to the system when freed."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3       # mallopt's parameter number (glibc's malloc.h)
THRESHOLD = 128 * 1024      # glibc's own starting value, held fixed


def hold_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold for this process; False (and nothing changed) on other C libraries."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False

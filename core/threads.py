"""Thread counts, chosen on purpose for every thread that computes.

A parallel region waits at its barriers for its slowest thread; when another process holds a core, that thread is
descheduled and every barrier waits a whole scheduler slice: the CPU rasterizer's forward and backward at 10k
Gaussians took 410 ms on two numba threads beside one busy process, 22 ms on one. So work that must keep time (live
mode, the Viewport, the studio's workers) runs on threads of its own, each with one numba and one torch thread:
the operating system then shares the cores among whole tasks, and a busy machine slows them in proportion instead
of stalling them. numba's count is per calling thread; torch's intra-op pool is per process.
"""

from __future__ import annotations

import numba
import torch


def single_threaded() -> None:
    """This thread's numba parallel regions run on it alone; torch's intra-op pool is one thread (process-wide)."""
    numba.set_num_threads(1)
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)

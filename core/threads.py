"""Thread counts, chosen on purpose for every thread that computes.

A parallel region waits at its barriers for its slowest thread; when another process holds a core, that thread is
descheduled and every barrier waits for the scheduler. Measured here (benchmarks/render.py, benchmarks/train.py):
the tile rasterizer's forward and backward at 10k Gaussians 256² takes the same time on one thread idle or beside a
busy process, and twice as long on two threads beside it; 300 steps of avatar training take 26 s on two threads
idle, 94 s on two beside a busy process, 41 s on one thread either way. So:

- work that must keep time (live mode, the Viewport, the studio's workers) runs on threads of its own, each with
  one numba and one torch thread (``single_threaded``): the system then shares the cores among whole tasks, and a
  busy machine slows them in proportion instead of stalling them at barriers;
- long batch work (training) uses every core while the machine is otherwise idle and one thread as soon as other
  processes take a core's worth (``ThreadGovernor``, checked every few seconds).

numba's count is per calling thread; torch's intra-op pool and numpy's BLAS (OpenBLAS, whose idle workers spin for
a while after every call: in live mode the speech front-end's small matrix products kept one of them spinning on a
whole core) are per process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numba
import torch
from threadpoolctl import ThreadpoolController

BUSY_CORES = 0.5        # other processes using this much of the machine's cores: one thread


def _blas_pools() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded now (numpy's, scipy's): process-wide pools."""
    return ThreadpoolController().select(user_api="blas").lib_controllers


def _set_pool(lib, n: int) -> None:
    if lib.get_num_threads() != n:
        lib.set_num_threads(n)


def single_threaded() -> None:
    """This thread's numba parallel regions run on it alone; torch's intra-op pool and numpy's BLAS are one thread
    (process-wide)."""
    set_threads(1)


def set_threads(n: int) -> None:
    """numba (this thread's regions), torch and numpy's BLAS on ``n`` threads."""
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    for lib in _blas_pools():
        _set_pool(lib, n)


def saved_threads() -> Callable[[], None]:
    """A function that puts the process-wide counts (torch's intra-op pool, the BLAS pools) back as they are now:
    for work such as live mode that runs its threads on one each, and must not leave the process so afterwards."""
    torch_threads = torch.get_num_threads()
    blas = [(lib, lib.get_num_threads()) for lib in _blas_pools()]

    def restore() -> None:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
        for lib, n in blas:
            _set_pool(lib, n)
    return restore


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux's /proc/stat), or None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """``most`` threads (default: torch's count now: every core in the CLI, one in the studio, whose threads each
    run on one) while nothing else runs, one while other processes keep a core busy: ``update()`` between steps
    looks at what the rest of the machine used since it last looked (at most every ``every_s``)."""

    def __init__(self, every_s: float = 3.0, most: int | None = None):
        self.cores = most or torch.get_num_threads()
        self.every_s = every_s
        self.threads = self.cores
        self._mark = self._sample()
        set_threads(self.threads)

    @staticmethod
    def _sample() -> tuple[float, float, float | None]:
        t = os.times()
        return time.monotonic(), t.user + t.system, _machine_busy_seconds()

    def update(self) -> int:
        """The thread count now in force (changed when the machine's load crossed ``BUSY_CORES``)."""
        now = self._sample()
        wall = now[0] - self._mark[0]
        if wall < self.every_s:
            return self.threads
        if now[2] is not None and self._mark[2] is not None:
            others = ((now[2] - self._mark[2]) - (now[1] - self._mark[1])) / wall   # cores the rest used
            threads = 1 if others > BUSY_CORES else self.cores
            if threads != self.threads:
                self.threads = threads
                set_threads(threads)
        self._mark = now
        return self.threads

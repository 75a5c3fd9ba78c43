"""The thread policy (core/threads.py): the governor keeps every thread it was given while the machine is otherwise
idle, drops to one while other processes keep a core busy, and comes back when they stop."""

from __future__ import annotations

import numba
import torch
from threadpoolctl import threadpool_info

from core import threads
from core.threads import ThreadGovernor, single_threaded


def test_governor_follows_the_rest_of_the_machine(monkeypatch):
    clock = {"wall": 0.0, "own": 0.0, "machine": 0.0}
    monkeypatch.setattr(ThreadGovernor, "_sample", staticmethod(lambda: (clock["wall"], clock["own"],
                                                                         clock["machine"])))
    applied = []
    monkeypatch.setattr(threads, "set_threads", applied.append)

    def seconds(wall: float, own_cores: float, other_cores: float) -> int:
        clock["wall"] += wall
        clock["own"] += own_cores * wall
        clock["machine"] += (own_cores + other_cores) * wall
        return governor.update()

    governor = ThreadGovernor(every_s=3.0, most=2)
    assert applied == [2]
    assert seconds(3.0, own_cores=2.0, other_cores=0.1) == 2          # idle machine: both threads
    assert seconds(3.0, own_cores=1.2, other_cores=1.0) == 1          # one busy process: one thread
    assert seconds(1.0, own_cores=1.0, other_cores=0.0) == 1          # too soon to look again
    assert seconds(3.0, own_cores=1.0, other_cores=0.0) == 2          # it stopped: both again
    assert applied == [2, 1, 2]


def test_single_threaded_sets_this_threads_numba_torch_and_numpys_blas():
    before = torch.get_num_threads()
    try:
        single_threaded()
        assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1
        blas = lambda: {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}  # noqa: E731
        assert blas() == {1}
        threads.set_threads(2)
        assert blas() == {2}
    finally:
        threads.set_threads(before)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_saved_threads_puts_the_process_counts_back():
    blas = lambda: {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}  # noqa: E731
    threads.set_threads(2)
    try:
        restore = threads.saved_threads()
        single_threaded()
        assert torch.get_num_threads() == 1 and blas() == {1}
        restore()
        assert torch.get_num_threads() == 2 and blas() == {2}
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

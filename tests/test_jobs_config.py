"""The job protocol and typed configs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

from core.config import config_hash, from_dict, to_dict
from core.jobs import CancelToken, Cancelled, Progress, run_job, span


@dataclass
class CountJob:
    n: int
    name: str = "count"

    def run(self, progress, cancel):
        for i in range(self.n):
            cancel.check(self.name)
            progress(Progress((i + 1) / self.n, f"{i + 1}/{self.n}"))
        return self.n


def test_job_reports_progress_to_one():
    seen: list[Progress] = []
    assert run_job(CountJob(4), seen.append) == 4
    assert [p.fraction for p in seen] == [0.25, 0.5, 0.75, 1.0]


def test_cancel_from_another_thread():
    token = CancelToken()
    seen: list[float] = []

    def progress(p):
        seen.append(p.fraction)
        if p.fraction >= 0.5:
            threading.Thread(target=token.cancel).start()
            threading.Event().wait(0.05)

    with pytest.raises(Cancelled, match="count was cancelled"):
        run_job(CountJob(10), progress, token)
    assert seen[-1] == 0.5


def test_span_maps_sub_progress():
    seen: list[Progress] = []
    sub = span(seen.append, 0.5, 1.0)
    sub(Progress(0.0, "a"))
    sub(Progress(0.5, "b"))
    sub(Progress(2.0, "c"))
    assert [p.fraction for p in seen] == [0.5, 0.75, 1.0]


@dataclass(frozen=True)
class Inner:
    rate: Fraction = Fraction(25, 1)
    size: tuple[int, int] = (512, 512)


@dataclass(frozen=True)
class Outer:
    path: Path = Path("a/b.mp4")
    inner: Inner = field(default_factory=Inner)
    name: str | None = None
    steps: int = 3


def test_config_roundtrip_and_hash():
    cfg = Outer(inner=Inner(Fraction(30000, 1001), (640, 480)), name="x")
    d = to_dict(cfg)
    assert d == {"path": "a/b.mp4", "inner": {"rate": "30000/1001", "size": [640, 480]}, "name": "x", "steps": 3}
    assert from_dict(Outer, d) == cfg
    assert config_hash(cfg) == config_hash(from_dict(Outer, d))
    assert config_hash(cfg) != config_hash(Outer())
    with pytest.raises(ValueError, match="unknown field"):
        from_dict(Outer, {"bogus": 1})

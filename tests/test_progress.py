"""A study's progress line: position, the job's time, and the time left at the mean pace so far."""

from __future__ import annotations

import pytest

from xent_lab.sweep import progress
from xent_lab.sweep.progress import Progress, sweep_size


def test_the_sweep_size_is_the_product_of_the_swept_values():
    assert sweep_size({"loss": "cce,bce,focal", "seed": "range(3)", "loss.impl": "custom"}) == 9
    assert sweep_size({}) == 1


def test_each_finished_job_says_its_position_and_the_time_left(monkeypatch):
    clock = iter([0.0, 40.0, 40.0, 90.0, 100.0, 120.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    study = Progress(total=3, started=0.0)
    study.start_job()
    assert study.finish_job("mnist-cce-builtin-s0") == "job 1/3 done (mnist-cce-builtin-s0, 40 s); about 80 s left"
    study.start_job()
    assert study.finish_job("mnist-focal-custom-s1") == "job 2/3 done (mnist-focal-custom-s1, 50 s); about 45 s left"
    study.start_job()
    assert study.finish_job("mnist-bce-custom-s0").endswith("(mnist-bce-custom-s0, 20 s); all done")


@pytest.mark.parametrize("seconds,text", [(41, "41 s"), (540, "9 min"), (3 * 3600, "3.0 h")])
def test_durations_read_naturally(seconds, text):
    assert progress._duration(seconds) == text


def test_only_the_launching_process_reports(monkeypatch):
    study = Progress(total=2)
    assert study.reports_here()
    monkeypatch.setattr(progress.os, "getpid", lambda: study.pid + 1)  # a joblib worker's copy of the callback
    assert not study.reports_here()

"""xent_lab.training.summary: the run's note names the settings that tell runs of one loss apart."""

from __future__ import annotations

import pytest

from tests.helpers.e2e import compose_config
from xent_lab.tracking import tags as T
from xent_lab.training.runtime import Runtime
from xent_lab.training.summary import run_note

RESULTS = {T.TEST_ACCURACY: 0.9, T.TEST_LOSS: 0.3, T.TEST_ECE: 0.02}
CPU = Runtime(device="cpu", device_name="CPU", precision="float32")


@pytest.mark.parametrize(
    "overrides,shown",
    [
        (("loss=sparse_focal", "loss.gamma=flsd53"), "gamma=flsd53"),
        (("loss=poly1", "loss.poly_epsilon=2.0"), "poly_epsilon=2.0"),
        (("loss=mmce", "loss.mmce_weight=8.0"), "mmce_weight=8.0, mmce_weighted=True"),
        (("loss=cce", "loss.impl=naive", "loss.epsilon=1e-07"), "epsilon=1e-07"),
    ],
)
def test_the_note_names_each_losss_own_settings(tmp_path, overrides, shown):
    note = run_note(compose_config(tmp_path, tmp_path, *overrides), RESULTS, CPU)
    assert shown in note.splitlines()[0], note


def test_a_plain_cross_entropy_note_has_no_other_losss_settings(tmp_path):
    first = run_note(compose_config(tmp_path, tmp_path), RESULTS, CPU).splitlines()[0]
    assert "gamma" not in first and "epsilon" not in first and "(builtin; from_logits=True)" in first

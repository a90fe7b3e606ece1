"""`make bench` runs end to end and writes every figure (the figures themselves are not asserted).

It starts a real `mlflow server` for the HTTP-versus-SQLite figure.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers.e2e import data_dir
from xent_lab.bench.__main__ import main as bench_main
from xent_lab.bench.common import noise_verdict


@pytest.mark.server  # and a subprocess: the startup figure
def test_quick_bench_writes_all_figures(tmp_path, cache_dir, monkeypatch):
    """In this process, as `make bench ARGS=--quick` runs it (its startup figure is a real subprocess)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XENT_DATA_DIR", str(data_dir()))
    monkeypatch.setenv("XENT_CACHE_DIR", str(cache_dir))
    out = tmp_path / "bench.json"
    bench_main(["--quick", "--out", str(out)])
    figures = json.loads(out.read_text())
    assert not (tmp_path / "mlruns").exists(), "the bench left run artifacts in the folder it was started from"
    for key in (
        "epoch_seconds_harness_over_plain_fit",
        "epoch_seconds_harness_with_calibration_over_plain_fit",
        "calibration_metrics_over_argmax",
        "epoch_seconds_http_server_over_sqlite",
    ):
        assert figures[key]["ratio"] > 0 and math.isfinite(figures[key]["ratio"]), key
    server = figures["epoch_seconds_http_server_over_sqlite"]
    assert set(server["rounds"][0]) == {"http_server", "local_sqlite"}
    assert all(0 < seconds < 60 for seconds in server["log_batch_seconds"].values()), server["log_batch_seconds"]
    assert 0 < figures["calibration_callback_fraction_of_epoch"]["fraction"] < 1
    assert figures["startup"]["seconds_from_module_start"] > 0
    cases = {"bce", "cce", "sparse_cce", "focal", "cce_builtin_twice"}
    assert set(figures["training_step_custom_over_builtin"]) == cases
    steps = figures["training_step_custom_over_builtin"]
    assert all(s["spread"] >= 1 and s["ratio"] > 0 and len(s["ratios"]) == 1 for s in steps.values()), steps
    forward_backward = figures["loss_forward_backward_custom_over_builtin"]["losses"]
    # Every loss with a built-in, on (batch, 10) logits, and the binary ones on (batch, 1) too, in both modes.
    shapes = {name: sorted(by_shape) for name, by_shape in forward_backward.items()}
    assert shapes == {
        "BinaryCrossentropy": ["4096x1", "4096x10"],
        "CategoricalCrossentropy": ["4096x10"],
        "SparseCategoricalCrossentropy": ["4096x10"],
        "BinaryFocalCrossentropy": ["4096x1", "4096x10"],
        "CategoricalFocalCrossentropy": ["4096x10"],
    }
    modes = [m for by_shape in forward_backward.values() for by_mode in by_shape.values() for m in by_mode.items()]
    assert {name for name, _ in modes} == {"tf_function", "xla"}
    assert all(math.isfinite(f["ratio"]) and f["ratio"] > 0 for _, f in modes)
    assert all(f["verdict"] in ("faster", "parity", "slower") for _, f in modes)
    control = figures["loss_forward_backward_custom_over_builtin"]["control_builtin_over_builtin"]
    assert set(control) == {"tf_function", "xla"} and all(math.isfinite(c["ratio"]) for c in control.values())
    new_losses = figures["new_losses_over_cce"]["losses"]
    assert new_losses and all(math.isfinite(f["ratio"]) and f["ratio"] > 0 for f in new_losses.values()), new_losses
    break_even = figures["mmce_batch_under_1_5x_cce"]
    assert set(break_even["batches"]) == {"32", "256"} and break_even["break_even"] in (None, 32, 256)


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [([0.90, 0.95, 0.97], "faster"), ([1.04, 1.06, 1.05], "slower"), ([0.97, 1.00, 1.04], "parity")],
)
def test_a_cell_is_faster_or_slower_only_beyond_the_controls_noise(ratios, verdict):
    # The built-in against itself measured rounds of 0.98-1.03: a cell is called faster or slower only when
    # all its rounds lie outside that range.
    assert noise_verdict(ratios, control=[0.98, 1.01, 1.03]) == verdict

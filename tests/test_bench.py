"""`make bench ARGS=--quick` runs every section end to end and writes every figure (the figures themselves are not
asserted). One test per section or group of sections (`--only`), so that pytest-xdist spreads them over its workers.

The server section starts a real `mlflow server` for the HTTP-versus-SQLite figure, the startup one a real process.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers.e2e import data_dir
from xent_lab import calibration
from xent_lab.bench.__main__ import main as bench_main
from xent_lab.bench.common import noise_verdict

# What every JSON holds besides its sections' figures.
HEADER = {"date", "machine", "quick"}


def quick_bench(only: str, tmp_path, cache_dir, monkeypatch) -> dict:
    """`make bench ARGS="--quick --only ONLY"` in this process; its figures, less the header."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XENT_DATA_DIR", str(data_dir()))
    monkeypatch.setenv("XENT_CACHE_DIR", str(cache_dir))
    out = tmp_path / "bench.json"
    bench_main(["--quick", "--only", only, "--out", str(out)])
    figures = json.loads(out.read_text())
    assert not (tmp_path / "mlruns").exists(), "the bench left run artifacts in the folder it was started from"
    assert figures["quick"] is True
    return {key: value for key, value in figures.items() if key not in HEADER}


@pytest.mark.slow
def test_quick_bench_harness_figures(tmp_path, cache_dir, monkeypatch):
    figures = quick_bench("harness", tmp_path, cache_dir, monkeypatch)
    assert set(figures) == {
        "epoch_seconds_harness_over_plain_fit",
        "epoch_seconds_harness_with_calibration_over_plain_fit",
        "calibration_callback_fraction_of_epoch",
    }
    for key in ("epoch_seconds_harness_over_plain_fit", "epoch_seconds_harness_with_calibration_over_plain_fit"):
        assert figures[key]["ratio"] > 0 and math.isfinite(figures[key]["ratio"]), key
    assert 0 < figures["calibration_callback_fraction_of_epoch"]["fraction"] < 1


@pytest.mark.server
def test_quick_bench_server_figure(tmp_path, cache_dir, monkeypatch):
    figures = quick_bench("server", tmp_path, cache_dir, monkeypatch)
    assert set(figures) == {"epoch_seconds_http_server_over_sqlite"}
    server = figures["epoch_seconds_http_server_over_sqlite"]
    assert server["ratio"] > 0 and math.isfinite(server["ratio"])
    assert set(server["rounds"][0]) == {"http_server", "local_sqlite"}
    assert all(0 < seconds < 60 for seconds in server["log_batch_seconds"].values()), server["log_batch_seconds"]


@pytest.mark.subprocess  # the startup figure
def test_quick_bench_startup_system_and_calibration_figures(tmp_path, cache_dir, monkeypatch):
    """Three sections in one run, as `--only` takes a list."""
    figures = quick_bench("startup,system,calibration", tmp_path, cache_dir, monkeypatch)
    assert set(figures) == {
        "startup",
        "system_metrics_fraction_of_time",
        "calibration_metrics_over_argmax",
        "selective_metrics_over_argmax",
        "bootstrap_seconds",
        "recalibration_fit_seconds",
    }
    assert figures["startup"]["seconds_from_module_start"] > 0
    assert 0 < figures["system_metrics_fraction_of_time"]["fraction"] < 1
    for key in ("calibration_metrics_over_argmax", "selective_metrics_over_argmax"):
        assert figures[key]["ratio"] > 0 and math.isfinite(figures[key]["ratio"]), key
    assert figures["bootstrap_seconds"]["seconds"] > 0
    assert set(figures["recalibration_fit_seconds"]["seconds"]) == set(calibration.RECALIBRATORS)


@pytest.mark.slow
def test_quick_bench_loss_figures(tmp_path, cache_dir, monkeypatch):
    figures = quick_bench("losses", tmp_path, cache_dir, monkeypatch)
    assert set(figures) == {
        "training_step_custom_over_builtin",
        "loss_forward_backward_custom_over_builtin",
        "new_losses_over_cce",
        "mmce_batch_under_1_5x_cce",
    }
    cases = {"bce", "cce", "sparse_cce", "focal", "cce_builtin_twice"}
    assert set(figures["training_step_custom_over_builtin"]) == cases
    steps = figures["training_step_custom_over_builtin"]
    assert all(s["spread"] >= 1 and s["ratio"] > 0 and len(s["ratios"]) == 1 for s in steps.values()), steps
    forward_backward = figures["loss_forward_backward_custom_over_builtin"]["losses"]
    # Every loss with a built-in, on (batch, 10) logits, and the binary ones on (batch, 1) too; --quick compiles
    # one cell under XLA (BinaryCrossentropy at (batch, 1)), every cell with tf.function.
    modes = {
        name: {shape: sorted(by_mode) for shape, by_mode in by_shape.items()}
        for name, by_shape in forward_backward.items()
    }
    assert modes == {
        "BinaryCrossentropy": {"256x1": ["tf_function", "xla"], "256x10": ["tf_function"]},
        "CategoricalCrossentropy": {"256x10": ["tf_function"]},
        "SparseCategoricalCrossentropy": {"256x10": ["tf_function"]},
        "BinaryFocalCrossentropy": {"256x1": ["tf_function"], "256x10": ["tf_function"]},
        "CategoricalFocalCrossentropy": {"256x10": ["tf_function"]},
    }
    cells = [f for by_shape in forward_backward.values() for by_mode in by_shape.values() for f in by_mode.values()]
    assert all(math.isfinite(f["ratio"]) and f["ratio"] > 0 for f in cells)
    assert all(f["verdict"] in ("faster", "parity", "slower") for f in cells)
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

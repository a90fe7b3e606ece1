"""The report's figures from plain inputs: panels, rows, marks and axes as drawn on the Figure objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import create_store
from xent_lab import calibration
from xent_lab.report.figures import (
    Curve,
    ForestRow,
    ReliabilityCurve,
    TemperaturePoint,
    draw_figures,
    forest_figure,
    recall_figure,
    reliability_curves,
    reliability_figure,
    row_label,
    temperature_figure,
    val_nll_figure,
    write_figures,
)
from xent_lab.report.figures.curves import _split
from xent_lab.report.figures.layout import short
from xent_lab.report.figures.reliability import wilson_interval
from xent_lab.report.load import Launch, group_jobs, load_launch


def test_row_label_drops_what_the_panel_names():
    assert row_label("dataset=imdb, loss=focal_flsd53, trainer.keep=last", "custom") == "focal_flsd53"
    assert row_label("loss=focal, loss.class_weight=balanced", "custom") == "focal, class_weight=balanced"
    assert row_label("loss=cce", "builtin", ["custom", "builtin"]) == "cce [builtin]"


def test_a_variant_splits_into_its_panel_and_its_line():
    facet, line = _split("dataset=mnist, loss.from_logits=true, trainer.optimizer.learning_rate=0.1, loss=cce")
    assert short(facet) == "learning_rate=0.1"
    assert short(line) == "from_logits=true, cce"


# --------------------------------------------------------------------------- forest


def _forest_rows() -> list[ForestRow]:
    rows = []
    for panel in ("imdb: kept epoch (best val. accuracy)", "imdb: last epoch"):
        for metric in ("ECE", "NLL"):
            rows.append(ForestRow(panel, "focal", metric, -0.05, (-0.07, -0.03), (-0.09, -0.01)))
            rows.append(ForestRow(panel, "focal_flsd53", metric, 0.01, (-0.01, 0.03), None))
            rows.append(ForestRow(panel, "brier", metric, 0.002, (np.nan, np.nan), (-0.004, 0.008)))
    return rows


def test_forest_has_a_panel_per_panel_and_metric_with_the_rows_labelled_top_down():
    figure = forest_figure(_forest_rows())
    assert len(figure.axes) == 4
    assert [ax.get_title() for ax in figure.axes] == [
        "imdb: kept epoch (best val. accuracy)\nECE",
        "imdb: kept epoch (best val. accuracy)\nNLL",
        "imdb: last epoch\nECE",
        "imdb: last epoch\nNLL",
    ]
    ax = figure.axes[0]
    labels = {tick.get_text(): tick.get_position()[1] for tick in ax.get_yticklabels()}
    assert labels == {"focal": 2.0, "focal_flsd53": 1.0, "brier": 0.0}
    # The zero line, and two interval sets: seeds for all three rows, combined for the two that have one.
    assert any(tuple(line.get_xdata()) == (0.0, 0.0) for line in ax.lines)
    seeds, combined = ax.containers
    assert seeds.get_label().startswith("seeds (Student t") and combined.get_label().startswith("seeds and test")
    assert len(seeds.lines[0].get_xdata()) == 3 and len(combined.lines[0].get_xdata()) == 2
    # The seed interval of focal, above its line: from -0.07 to -0.03.
    segments = seeds.lines[2][0].get_segments()
    assert np.allclose(segments[0], [[-0.07, 2.17], [-0.03, 2.17]])
    # Brier's seed interval has no bounds (one seed): a point without whiskers.
    assert np.allclose(segments[2], [[0.002, 0.17], [0.002, 0.17]])


def test_forest_without_rows_is_none():
    assert forest_figure([]) is None


# --------------------------------------------------------------------------- validation NLL


def test_val_nll_one_panel_per_dataset_one_line_per_loss_kept_epochs_counted_from_one():
    curves = [
        Curve("imdb", "cce", [{0: 0.5, 1: 0.4, 2: 0.45}, {0: 0.7, 1: 0.2, 2: 0.35}], [1, None]),
        Curve("imdb", "focal", [{0: 0.6, 1: 0.5, 2: 0.48}], [2]),
        Curve("mnist", "cce", [{0: 0.3, 1: 0.2}], [1]),
    ]
    figure = val_nll_figure(curves, note="Not drawn: 1 curves (builtin) identical to the custom one, seed for seed")
    assert [ax.get_title() for ax in figure.axes] == ["imdb", "mnist"]
    imdb = figure.axes[0]
    assert [line.get_label() for line in imdb.lines] == ["cce (n=2)", "focal (n=1)"]
    assert list(imdb.lines[0].get_xdata()) == [1, 2, 3]
    assert np.allclose(imdb.lines[0].get_ydata(), [0.6, 0.3, 0.4])
    # One dot per seed that logged its kept epoch, on its own value: cce seed 0 at epoch 2, focal at epoch 3.
    dots = [c.get_offsets().tolist() for c in imdb.collections if isinstance(c, PathCollection)]
    assert dots == [[[2.0, 0.4]], [[3.0, 0.48]]]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["cce", "focal"]
    assert figure.legends[0].get_title().get_text().startswith("Not drawn: 1 curves (builtin)")


def test_val_nll_without_histories_is_none():
    assert val_nll_figure([Curve("imdb", "cce", [{}], [None])]) is None


# --------------------------------------------------------------------------- reliability


def test_wilson_interval_by_hand():
    # 8 of 10: centre (0.8 + 1.96²/20) / (1 + 1.96²/10) = 0.71674, half-width 1.96·√(0.016 + 1.96²/400)/1.38415
    low, high = wilson_interval(np.array([8, 0]), np.array([10, 5]), z=1.96)
    assert low == pytest.approx([0.49016, 0.0], abs=1e-5)
    assert high == pytest.approx([0.94332, 0.43449], abs=1e-5)


def _binary(n: int, shift: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = rng.uniform(0.0, 1.0, n)
    labels = (rng.uniform(size=n) < np.clip(p + shift, 0, 1)).astype(int)
    return np.column_stack([1 - p, p]), labels


def test_reliability_panels_binary_axis_from_half_and_sparse_bins_hidden():
    rng = np.random.default_rng(0)
    curves = [
        ReliabilityCurve("imdb: last epoch", "cce", *_binary(2000, 0.0, rng)),
        ReliabilityCurve("imdb: last epoch", "focal", *_binary(2000, 0.1, rng)),
    ]
    probs = np.full((50, 3), 0.1)
    probs[:45, 0], probs[45:, 0] = 0.8, 0.1  # 45 samples at confidence 0.8; 5 at 0.8 on class 1
    probs[45:, 1] = 0.8
    curves.append(ReliabilityCurve("mnist", "cce", probs, np.zeros(50, dtype=int)))
    figure = reliability_figure(curves, n_bins=10, min_count=20)
    assert len(figure.axes) == 4  # two panels, each the curves over the histogram
    top, histogram, mnist, _ = figure.axes
    assert top.get_title() == "imdb: last epoch" and mnist.get_title() == "mnist"
    assert top.get_xlim() == (0.5, 1.0) and histogram.get_xlim() == (0.5, 1.0)
    assert mnist.get_xlim() == (0.0, 1.0)
    labels = [c.get_label() for c in top.containers]
    assert len(labels) == 2 and labels[0].startswith("cce (ECE") and labels[1].startswith("focal (ECE")
    assert len(histogram.patches) == 2  # one histogram outline per curve
    # mnist: one bin holds all 50 (45 right, 5 wrong): one point at accuracy 0.9.
    (points,) = mnist.containers
    assert np.allclose(points.lines[0].get_ydata(), [0.9])
    # With the minimum above 50 samples the bin is hidden: the panel keeps its histogram, draws no point.
    sparse = reliability_figure(curves[2:], n_bins=10, min_count=51)
    assert not sparse.axes[0].containers and len(sparse.axes[1].patches) == 1


def test_reliability_draws_a_bin_of_all_correct_samples():
    # 25 of 25: the Wilson upper bound computes to 1 - 1e-16, below the accuracy; no negative whisker.
    probs = np.tile([0.9, 0.05, 0.05], (25, 1))
    figure = reliability_figure([ReliabilityCurve("mnist", "cce", probs, np.zeros(25, dtype=int))], n_bins=10)
    (points,) = figure.axes[0].containers
    assert np.allclose(points.lines[0].get_ydata(), [1.0])


def test_reliability_without_curves_is_none():
    assert reliability_figure([]) is None


# --------------------------------------------------------------------------- temperature


def test_temperature_panels_need_two_gammas_and_flsd53_sits_right_of_the_fixed_gammas():
    points = [
        TemperaturePoint("imdb", "last epoch", gamma, t)
        for gamma, ts in ((0.0, (2.0, 2.2)), (1.0, (1.5, 1.7)), (3.0, (0.9, 1.1)), ("flsd53", (1.0, 1.2)))
        for t in ts
    ]
    points.append(TemperaturePoint("mnist", "last epoch", 0.0, 1.1))  # one γ: no panel
    figure = temperature_figure(points)
    (ax,) = figure.axes
    assert ax.get_title() == "imdb"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "3", "FLSD-53"]
    assert list(ax.get_xticks()) == [0.0, 1.0, 3.0, 4.0]
    mean_line = next(line for line in ax.lines if line.get_label() == "last epoch: mean")
    assert np.allclose(mean_line.get_xdata(), [0, 1, 3]) and np.allclose(mean_line.get_ydata(), [2.1, 1.6, 1.0])
    assert temperature_figure([p for p in points if p.panel == "mnist"]) is None


# --------------------------------------------------------------------------- from a store, through draw_figures

STUDY = "figures_study"
EPOCHS = 4
N_TEST = 400
LOSSES = {"cce": ("cce", None), "focal": ("focal", "2.0"), "focal_flsd53": ("focal", "flsd53")}


def _log_run(client, experiment_id, parent, tmp, dataset, loss, seed, imbalance, rng) -> None:
    tag, gamma = LOSSES[loss]
    k, head = (2, "sigmoid") if dataset == "imdb" else (10, "softmax")
    overrides = {"dataset": dataset, "loss": loss, "seed": str(seed)}
    run_id = client.create_run(
        experiment_id,
        tags={
            "mlflow.parentRunId": parent,
            "xent.study": STUDY,
            "xent.role": "child",
            "xent.job_overrides": json.dumps(overrides),
            "xent.keep": "best_val_accuracy",
            "dataset": dataset,
            "loss": tag,
            "impl": "custom",
            "seed": str(seed),
        },
    ).info.run_id
    params = {"calibration.n_bins": "15", "dataset.imbalance": imbalance, **({"loss.gamma": gamma} if gamma else {})}
    final = {"test/temperature": 1.0 + rng.uniform(0, 1), "test/ece": rng.uniform(0, 0.1), "train/kept_epoch": 1}
    final |= {f"last_epoch/{key}": value + 0.5 for key, value in final.items() if key.startswith("test/")}
    final |= {f"test/recall/{c}": rng.uniform(0.5, 1) for c in range(k)}
    history = [Metric("val/nll", 0.5 + 0.05 * (epoch - 1) ** 2 + rng.uniform(0, 0.02), 0, epoch) for epoch in range(4)]
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), 0, EPOCHS) for key, value in final.items()] + history,
        params=[Param(key, value) for key, value in params.items()],
    )
    folder = tmp / run_id
    folder.mkdir()
    for artifact in ("predictions/test_predictions.npz", "predictions/test_predictions_last_epoch.npz"):
        logits = rng.normal(size=(N_TEST,) if head == "sigmoid" else (N_TEST, k)) * 3
        path = calibration.save_predictions(folder / artifact.split("/")[1], logits, rng.integers(0, k, N_TEST), head)
        client.log_artifact(run_id, str(path), "predictions")
    client.set_terminated(run_id, "FINISHED")


def _launch(root: Path, imbalance: str) -> tuple[MlflowClient, Launch]:
    uri = create_store(root)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(STUDY)
    sweep = {"dataset": "imdb,mnist", "loss": ",".join(LOSSES), "seed": "0,1"}
    parent = client.create_run(
        experiment_id, tags={"xent.study": STUDY, "xent.role": "parent", "xent.sweep": json.dumps(sweep)}
    ).info.run_id
    rng = np.random.default_rng(0)
    for dataset in ("imdb", "mnist"):
        for loss in LOSSES:
            for seed in (0, 1):
                _log_run(client, experiment_id, parent, root, dataset, loss, seed, imbalance, rng)
    return load_launch(STUDY, uri)


def _panels(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes if ax.get_title()]


def test_draw_figures_from_a_store_writes_each_figure_with_a_panel_per_dataset_and_evaluation(tmp_path):
    client, launch = _launch(tmp_path / "store", "None")
    groups = group_jobs(launch.jobs)
    evaluations = ["imdb: kept epoch (best val. accuracy)", "imdb: last epoch"]
    evaluations += ["mnist: kept epoch (best val. accuracy)", "mnist: last epoch"]
    rows = [
        ForestRow(panel, loss, "ECE", -0.01, (-0.02, 0.0), (-0.03, 0.01)) for panel in evaluations for loss in LOSSES
    ]
    figures = draw_figures(client, launch, groups, rows)
    written = write_figures(figures, tmp_path / "out")
    assert set(written) == {"forest.png", "val_nll.png", "reliability.png", "temperature.png"}
    for name in written:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures["recall.png"][1] is None  # balanced data: no recall figure
    assert _panels(figures["forest.png"][1]) == [f"{panel}\nECE" for panel in evaluations]
    # One curve per training: each run once, though evaluated twice; its kept epoch (step 1) marked.
    val_nll = figures["val_nll.png"][1]
    assert _panels(val_nll) == ["imdb", "mnist"]
    assert [line.get_label() for line in val_nll.axes[0].lines] == ["cce (n=2)", "focal (n=2)", "focal_flsd53 (n=2)"]
    # Reliability: a panel per dataset and evaluation, each over its histogram; by default the baseline (cce) and
    # the rows of lowest and highest ECE, here the other two.
    reliability = figures["reliability.png"][1]
    assert _panels(reliability) == evaluations and len(reliability.axes) == 8
    assert len(reliability.axes[0].containers) == 3
    assert reliability.axes[0].get_xlim() == (0.5, 1.0) and reliability.axes[4].get_xlim() == (0.0, 1.0)
    temperature = figures["temperature.png"][1]
    assert _panels(temperature) == ["imdb", "mnist"]
    assert [t.get_text() for t in temperature.axes[0].get_xticklabels()] == ["0", "2", "FLSD-53"]
    # Chosen rows, by their labels.
    chosen = reliability_curves(client, groups, launch.sweep, ["focal_flsd53", "cce"])
    assert [(c.panel, c.label, len(c.labels)) for c in chosen[:2]] == [
        (evaluations[0], "focal_flsd53", 2 * N_TEST),
        (evaluations[0], "cce", 2 * N_TEST),
    ]


def test_recall_is_drawn_for_imbalanced_data_only(tmp_path):
    client, launch = _launch(tmp_path / "store", "100")
    figure = recall_figure(group_jobs(launch.jobs), launch.jobs)
    assert _panels(figure) == ["imdb", "mnist"]
    assert [tick.get_text() for tick in figure.axes[1].get_xticklabels()] == [str(c) for c in range(10)]

"""REPORT.md's reading order and its sections, checked one by one on a small fixed MLflow store, and the parts
they are built from (the "did not learn" flag, the binned-ECE noise floor, the answers block, README's block).

The store (study "layout", `study.claims: focal_calibration`), 3 classes, seeds 0, 1, 2, planted metrics:
- `loss=cce` custom (the baseline) and its built-in twin, with the same values;
- `loss=focal_flsd53` custom: values with terms in s and s², so its differences to CE vary by seed;
- `loss=mmce` custom: did not learn (accuracy 0.34 at chance 1/3, validation NLL ln 3).
Each run logs test predictions (softmax logits of a seeded draw) for the noise floor, and a Keras summary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import create_store
from xent_lab import calibration, heads, report
from xent_lab.calibration.binning import top_label
from xent_lab.report import learned, paper, readme, validity
from xent_lab.report import paper_numbers as P
from xent_lab.report.document import render_report
from xent_lab.report.load import group_jobs, load_launch
from xent_lab.report.readme import Answer

STUDY = "layout"
SEEDS = (0, 1, 2)
K, N = 3, 600
T0 = 1_700_000_000_000
T_975_2 = 4.302653  # t_{0.975} with 2 degrees of freedom
METRICS = ("test/accuracy", "test/nll", "test/smooth_ece", "test/recal/temperature/smooth_ece", "test/temperature")


def _planted(loss: str, s: int) -> dict[str, float]:
    """accuracy, NLL, smooth ECE, smooth ECE after TS, T; binned ECE and ECE after TS."""
    if loss == "cce":
        values = (0.90 + 0.01 * s, 0.30 + 0.02 * s, 0.030 + 0.002 * s, 0.010 + 0.001 * s, 1.5 + 0.1 * s)
        binned = (0.040 + 0.002 * s, 0.012 + 0.001 * s)
    elif loss == "focal_flsd53":
        values = (0.89 + 0.012 * s, 0.32 + 0.01 * s + 0.005 * s**2, 0.015 + 0.001 * s + 0.001 * s**2, 0.009, 1.1)
        binned = (0.020, 0.011 + 0.0005 * s**2)
    else:  # mmce: the constant prediction
        values, binned = (0.34, math.log(K), 0.01, 0.01, 1.0), (0.01, 0.01)
    return {**dict(zip(METRICS, values, strict=True)), "test/ece": binned[0], "test/ece_ts": binned[1]}


def _log_run(client, experiment_id, parent_id, tmp: Path, loss: str, impl: str, seed: int, logits, labels):
    overrides = {"loss": loss, "loss.impl": impl, "seed": str(seed)}
    run_tags = {"mlflow.parentRunId": parent_id, "xent.study": STUDY, "xent.role": "child", "git_commit": "abc"}
    run_tags |= {"xent.job_overrides": json.dumps(overrides), "dataset": "mnist", "impl": impl, "seed": str(seed)}
    run_tags["loss"] = "focal" if loss == "focal_flsd53" else loss
    run_id = client.create_run(experiment_id, start_time=T0 + seed, run_name=f"{loss}-{impl}-s{seed}", tags=run_tags)
    run_id = run_id.info.run_id
    params = {"model.name": "cnn", "trainer.epochs": "3", "dataset.limit.train": "5000", "dataset.val_seed": "0"}
    params |= {"calibration.n_bins": "15", "study.claims": "focal_calibration"}
    metrics = _planted(loss, seed) | {f"test/recall/{k}": 0.9 for k in range(K)}
    val_nll = [1.0986, 1.0990, 1.0988] if loss == "mmce" else [0.5, 0.4, 0.35]
    history = [Metric("val/nll", v, T0, e) for e, v in enumerate(val_nll)]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), T0, 3) for k, v in metrics.items()] + history,
        params=[Param(k, v) for k, v in params.items()],
    )
    folder = tmp / run_id
    folder.mkdir()
    path = calibration.save_predictions(folder / "test_predictions.npz", logits, labels, "softmax")
    client.log_artifact(run_id, str(path), "predictions")
    (folder / "model_summary.txt").write_text("Model: cnn\n Total params: 1,234 (4.82 KB)\n")
    client.log_artifact(run_id, str(folder / "model_summary.txt"))
    client.set_terminated(run_id, "FINISHED", end_time=T0 + seed + 500)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout-store")
    uri = create_store(root)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(STUDY)
    sweep = {"loss": "cce,focal_flsd53,mmce", "loss.impl": "custom,builtin", "seed": "0,1,2"}
    parent_tags = {"xent.study": STUDY, "xent.role": "parent", "xent.sweep": json.dumps(sweep), "git_commit": "abc"}
    parent = client.create_run(experiment_id, start_time=T0, tags=parent_tags).info.run_id
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)
    logits = {}
    for seed in SEEDS:
        for loss, impl in (("cce", "custom"), ("cce", "builtin"), ("focal_flsd53", "custom"), ("mmce", "custom")):
            scale = 0.0 if loss == "mmce" else 2.0
            logits[loss, impl, seed] = scale * np.eye(K)[labels] + rng.normal(0, 1.0, (N, K))
            _log_run(client, experiment_id, parent, root, loss, impl, seed, logits[loss, impl, seed], labels)
    return uri, logits


@pytest.fixture(scope="module")
def text(store, tmp_path_factory):
    return report.build_report(STUDY, tracking_uri=store[0], out_dir=tmp_path_factory.mktemp("out")).read_text()


def _section(text: str, heading: str) -> str:
    body = text.split(f"\n{heading}\n", 1)[1]
    level = heading.split(" ")[0]
    return body.split(f"\n{level} ", 1)[0]


def _interval(values: list[float]) -> tuple[float, float, float]:
    mean, half = float(np.mean(values)), T_975_2 * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------- order


def test_sections_come_in_reading_order(text):
    order = [
        "# Study report: layout",
        "## Summary",
        "## Headline",
        "## Against the paper: Mukhoti et al. 2020",  # today's questions section, in the questions' place
        "## Figures",
        paper.HEADING,
        validity.HEADING,
        "# Appendix",
        "## Provenance",
        "## Findings",  # the full comparison table, first in the appendix
        "## Custom vs built-in",
        "## Results: mnist",
        "## Setup",
        "## Failed runs",
    ]
    positions = [text.index(f"{heading}\n") for heading in order]
    assert positions == sorted(positions)


# --------------------------------------------------------------------------- headline


def _headline_rows(text: str) -> dict[str, list[str]]:
    lines = [line for line in _section(text, "### mnist").splitlines() if line.startswith("| `")]
    return {cells[0]: cells[1:] for line in lines if (cells := [c.strip() for c in line.strip("|").split(" | ")])}


def test_headline_has_one_row_per_loss_with_intervals_and_deltas(text):
    rows = _headline_rows(text)
    assert list(rows) == [
        "`loss=cce` (baseline)",
        "`loss=focal_flsd53`",
        "`loss=mmce` **did not learn: 3/3 runs**",
    ]  # the built-in twin of CE is in the appendix only
    for index, metric in enumerate(METRICS):
        digits = 3 if metric == "test/temperature" else 4
        base = [_planted("cce", s)[metric] for s in SEEDS]
        mean, low, high = _interval(base)
        assert rows["`loss=cce` (baseline)"][index] == f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        differences = [_planted("focal_flsd53", s)[metric] - b for s, b in zip(SEEDS, base, strict=True)]
        d_mean, d_low, d_high = _interval(differences)
        assert rows["`loss=focal_flsd53`"][index].endswith(f"<br>Δ {d_mean:+.4f} [{d_low:+.4f}, {d_high:+.4f}]")
    assert rows["`loss=mmce` **did not learn: 3/3 runs**"][0] == "0.3400 [0.3400, 0.3400]"  # no Δ


# --------------------------------------------------------------------------- summary


def test_summary_states_what_is_compared_the_regime_and_the_numbers(text):
    summary = _section(text, "## Summary")
    assert (
        "**layout** compares 3 losses (`loss=cce`, `loss=focal_flsd53`, `loss=mmce`) with `loss=cce` in accuracy"
        in summary
    )
    flsd = [_planted("focal_flsd53", s)["test/smooth_ece"] for s in SEEDS]
    assert f"lowest smooth ECE: `loss=focal_flsd53` {np.mean(flsd):.4f} (Δ " in summary
    cce_t = np.mean([_planted("cce", s)["test/temperature"] for s in SEEDS])
    assert f"the baseline's T {cce_t:.3f}, above 1" in summary and "did not learn: `loss=mmce`." in summary
    assert (
        "- **Regime:** mnist: `dataset.limit.train`=5000, `trainer.epochs`=3, `model.name`=cnn, seeds 0, 1, 2"
        in summary
    )
    assert "declared questions" not in summary  # the claims section has no answers block


def test_summary_counts_the_verdicts_of_the_answers_block(store):
    client, launch = load_launch(STUDY, store[0])
    answers = [Answer("FLSD-53's ECE below CE's", "holds", "Δ −0.02"), Answer("T closer to 1", "not shown", "…")]
    answers.append(Answer("CE over-confident", "holds", "T 1.6"))
    text = render_report(launch, group_jobs(launch.jobs), {}, questions=readme.answers_lines(answers))
    assert "Of its 3 declared questions: 2 holds, 1 not shown. " in _section(text, "## Summary")
    assert readme.parse_answers(text.splitlines()) == answers


# --------------------------------------------------------------------------- the paper's numbers


def test_paper_section_quotes_their_numbers_with_the_source_and_ours_beside(text):
    section = _section(text, paper.HEADING)
    assert "`README.md` at commit `475422a` (main branch) of https://github.com/torrvision/focal_calibration" in section
    assert "| FLSD-53 (`focal_flsd53`) | 4.98 · 1.55 → 0.95 (T 1.1) | 5.42 · 1.87 → 1.07 (T 1.1) |" in section
    assert "`20newsgroup_eval_error_bars.sh` at commit `36c1c14` (nlp branch)" in section
    error = 100 * (1 - np.mean([_planted("cce", s)["test/accuracy"] for s in SEEDS]))
    ece = 100 * np.mean([_planted("cce", s)["test/ece"] for s in SEEDS])
    assert f"| `cce` | 3.4 | 1.8 | {error:.2f} · {ece:.2f} → " in section
    assert "| `focal_flsd53` | 1.5 | 0.7 |" in section and "| `mmce` | – | – |" in section
    assert "| epochs | 3 | 350 (CIFAR-10" in section and "| seeds | 0, 1, 2 |" in section


def test_quoted_numbers_are_the_authors_table():
    # Spot checks against the README's ECE table, row by row (ResNet-50 CE "4.35 | 1.35 (2.5)"; DenseNet-121
    # FLSD-53 "**1.22** | **1.22 (1)**"), and the scripts' `--temp` of CE (20 Newsgroups 3.4, SST 1.8).
    assert P.CIFAR_ECE["ResNet-50"][0] == P.Calibrated(4.35, 1.35, 2.5)
    assert P.CIFAR_ECE["DenseNet-121"][5] == P.Calibrated(1.22, 1.22, 1.0)
    assert P.CIFAR_ERROR["Wide-ResNet-26-10"] == (3.86, 4.08, 3.91, 4.2, 4.13, 4.01)
    assert (P.NEWSGROUPS_TEMPERATURES[1].temperature, P.SST_TEMPERATURES[0].temperature) == (3.4, 1.8)
    assert all(len(cells) == len(P.CIFAR_LOSSES) for cells in (*P.CIFAR_ERROR.values(), *P.CIFAR_ECE.values()))


# --------------------------------------------------------------------------- threats to validity


def test_threats_state_the_split_regime_sizes_and_the_computed_noise_floor(store, text):
    section = _section(text, validity.HEADING)
    assert "validation split of `dataset.val_seed=0`" in section
    assert "`cnn` 1,234 parameters" in section
    floors = [
        validity.binned_ece_floor(
            top_label(heads.probabilities(store[1][loss, "custom", 0], "softmax"), np.zeros(N))[0], 15
        )
        for loss in ("cce", "focal_flsd53", "mmce")
    ]
    assert f"  - mnist: {min(floors):.4f} to {max(floors):.4f} over the rows ({N} test samples, 15 bins)" in section
    largest = abs(
        np.mean([_planted("focal_flsd53", s)["test/ece_ts"] - _planted("cce", s)["test/ece_ts"] for s in SEEDS])
    )
    relation = "below" if largest < max(floors) else "above"
    assert f"the largest |Δ| of binned ECE after temperature scaling, {largest:.4f}, is {relation} it." in section
    assert "mean fitted T from 1.00 to 1.60 over its rows, above 1 (over-confident) in 2 of 3." in section


def test_binned_ece_floor_matches_the_binomial_mean_absolute_deviation():
    # All ten confidences 0.5, one bin: ECE = |k/10 - 1/2| for k ~ Bin(10, 1/2); E|k - 5| = 2 * 6 * C(10, 6) / 2^11
    # (de Moivre) = 1.23046875, so the floor is 0.123046875.
    floor = validity.binned_ece_floor(np.full(10, 0.5), n_bins=15, draws=20000)
    assert floor == pytest.approx(0.123046875, abs=0.003)
    assert validity.binned_ece_floor(np.ones(50), n_bins=15) == 0.0  # certain and always right: no noise


# --------------------------------------------------------------------------- did not learn


def test_the_store_flags_the_constant_runs_only(store):
    _, launch = load_launch(STUDY, store[0])
    flagged = learned.unlearned(launch.jobs)
    assert {job.tags["loss"] for job in launch.jobs if job.run_id in flagged} == {"mmce"} and len(flagged) == 3


# --------------------------------------------------------------------------- README block


def test_answers_block_round_trips_pipes_and_is_what_the_readme_shows(tmp_path):
    answers = [Answer("is a | b lower?", "holds", "Δ −0.0200 [−0.03, −0.01]"), Answer("T > 1", "does not hold", "1.0")]
    lines = readme.answers_lines(answers)
    assert lines[0] == readme.ANSWERS_START and lines[-1] == readme.ANSWERS_END
    assert readme.parse_answers(["text", *lines, "more"]) == answers
    folder = tmp_path / "experiments" / "a_study"
    folder.mkdir(parents=True)
    summary = ["## Summary", "", "Text.", "", "- **Regime:** mnist: seeds 0, 1", "", "## Headline"]
    (folder / "REPORT.md").write_text("\n".join(["# Study report: a_study", "", *summary, "", *lines, ""]))
    (tmp_path / "experiments" / "old").mkdir()
    (tmp_path / "experiments" / "old" / "REPORT.md").write_text("# Study report: old\n\n- **Regime:** x\n")
    path = tmp_path / "README.md"
    path.write_text(f"Intro.\n{readme.START}\nold\n{readme.END}\nEnd.\n")
    assert report.update_readme(path) is True
    block = path.read_text().split(f"{readme.START}\n")[1].split(f"\n{readme.END}")[0].splitlines()
    assert block[2:] == [
        "- **[a_study](experiments/a_study/REPORT.md)** (mnist: seeds 0, 1):",
        "  - is a | b lower?: **holds** (Δ −0.0200 [−0.03, −0.01])",
        "  - T > 1: **does not hold** (1.0)",
        "",
        "- **[old](experiments/old/REPORT.md)**: no answered questions in its report yet; rebuild it with "
        "`python -m xent_lab.report old`.",
    ]
    assert path.read_text().startswith("Intro.\n") and path.read_text().endswith(f"{readme.END}\nEnd.\n")
    assert report.update_readme(path) is False

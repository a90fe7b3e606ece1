"""Findings, recalibration, bootstrap-interval and over-fitting tables, and the README markers, on a real MLflow
SQLite store whose runs log real metrics computed from the test predictions they log.

The store (experiment "findings"), one launch, 3 seeds of each row on one shared test set:
- `loss=cce` [custom]: the baseline; logits 4·onehot(y) + N(0, σ²) per seed;
- `loss=focal` [custom]: a planted effect: the baseline's logits times 0.3 (same argmax, so the same
  accuracy; softer probabilities, so a higher ECE in every seed);
- `loss=sparse_cce` [custom]: noise: logits from the same distribution as the baseline, other draws.
The runs log `study.questions` (QUESTIONS): the planted effect, the noise, and a property of the baseline alone.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import create_store
from xent_lab import calibration, report
from xent_lab.report import findings as F
from xent_lab.report import readme, tables
from xent_lab.report.load import Job, ReportError, group_jobs, job_predictions, load_launch
from xent_lab.tracking import tags as T

STUDY = "findings"
SEEDS = (0, 1, 2)
N, K = 2000, 5
T0 = 1_700_000_000_000
RECAL = {"temperature": 0.01, "isotonic": 0.02}  # method -> offset of its test ECE from the seed's ECE
CI = (0.9, 0.95)  # test/accuracy/ci_low, /ci_high of every run, plus the seed / 100
QUESTIONS = [
    {"id": "Q1", "row": {"loss": "focal"}, "metric": "test/ece", "direction": "higher"},
    {"id": "Q2", "row": {"loss": "sparse_cce"}, "metric": "test/nll", "direction": "lower"},
    {
        "id": "Q3",
        "label": "CE is under-confident",
        "row": {"loss": "cce"},
        "metric": "test/overconfidence",
        "direction": "lower",
        "against": 0,
    },
]


def _logits(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    return 4.0 * np.eye(K)[labels] + rng.normal(0, 1.5, (N, K))


def _log_run(client, experiment_id, parent_id, tmp: Path, loss: str, seed: int, logits, labels, overfits: bool):
    overrides = {"loss": loss, "loss.impl": "custom", "seed": str(seed)}
    run = client.create_run(
        experiment_id,
        start_time=T0 + 1000 * seed,
        run_name=f"{loss}-s{seed}",
        tags={
            "mlflow.parentRunId": parent_id,
            "xent.study": STUDY,
            "xent.role": "child",
            "xent.job_overrides": json.dumps(overrides),
            "dataset": "mnist",
            "loss": loss,
            "impl": "custom",
            "seed": str(seed),
        },
    )
    run_id = run.info.run_id
    params = {
        "dataset.limit.train": "20000",
        "trainer.epochs": "4",
        "model.name": "mlp",
        "calibration.bootstrap": "200",
        "calibration.bootstrap_seed": "0",
        "calibration.n_bins": "15",
        "study.questions": str(QUESTIONS),
    }
    probs = calibration.probabilities(logits, "softmax")
    scores = calibration.calibration_metrics(probs, labels, 15)
    metrics = {
        "test/accuracy": scores["accuracy"],
        "test/nll": scores["nll"],
        "test/ece": scores["ece"],
        "test/ece_ts": scores["ece"],  # temperature 1: the scaled predictions are the predictions
        "test/temperature": 1.0,
        "test/accuracy/ci_low": CI[0] + seed / 100,
        "test/accuracy/ci_high": CI[1] + seed / 100,
        **{f"test/recal/{m}/ece": scores["ece"] + offset for m, offset in RECAL.items()},
    }
    # Over-fitting: the baseline reaches training accuracy 0.995 and its val NLL bottoms out at epoch 1 (of 0-3).
    train_accuracy = [0.9, 0.97, 0.99, 0.995] if overfits else [0.8, 0.85, 0.88, 0.9]
    val_nll = [0.5, 0.3, 0.35, 0.4 + seed / 100] if overfits else [0.5, 0.4, 0.35, 0.3]
    history = [Metric("train/accuracy", a, T0, e) for e, a in enumerate(train_accuracy)]
    history += [Metric("val/nll", v, T0, e) for e, v in enumerate(val_nll)]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), T0, 4) for k, v in metrics.items()] + history,
        params=[Param(k, v) for k, v in params.items()],
    )
    folder = tmp / run_id
    folder.mkdir()
    # The artifact the training logs (tags.PREDICTIONS_ARTIFACT): predictions/test_predictions.npz.
    client.log_artifact(
        run_id,
        str(calibration.save_predictions(folder / "test_predictions.npz", logits, labels, "softmax")),
        "predictions",
    )
    client.set_terminated(run_id, "FINISHED", end_time=T0 + 1000 * seed + 500)
    return scores


def _make_store(root: Path, seeds=SEEDS):
    uri = create_store(root)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(STUDY)
    sweep = {"loss": "cce,focal,sparse_cce", "loss.impl": "custom", "seed": ",".join(map(str, seeds))}
    parent = client.create_run(
        experiment_id, start_time=T0, tags={"xent.study": STUDY, "xent.role": "parent", "xent.sweep": json.dumps(sweep)}
    ).info.run_id
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)
    scores = {}
    for seed in seeds:
        base = _logits(rng, labels)
        for loss, logits in (("cce", base), ("focal", 0.3 * base), ("sparse_cce", _logits(rng, labels))):
            scores[loss, seed] = _log_run(
                client, experiment_id, parent, root, loss, seed, logits, labels, loss == "cce"
            )
    return uri, client, scores


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _make_store(tmp_path_factory.mktemp("findings-store"))


@pytest.fixture(scope="module")
def built(store, tmp_path_factory):
    uri, client, _ = store
    client_, launch = load_launch(STUDY, uri)
    groups = group_jobs(launch.jobs)
    found = F.compute_findings(client_, groups, launch.sweep)
    found = found._replace(answers=report.answer_questions(client_, found))
    path = report.build_report(STUDY, tracking_uri=uri, out_dir=tmp_path_factory.mktemp("findings-report"))
    return found, path.read_text()


def _get(found: F.Findings, variant: str, label: str) -> F.Comparison:
    (match,) = [c for c in found.comparisons if c.row.variant == variant and c.compared.label == label]
    return match


# --------------------------------------------------------------------------- statistics


def test_holm_matches_hand_computed_adjusted_p_values():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06; back in input order.
    assert report.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = report.holm([0.5, math.nan, 0.4])  # NaN is not a test: m = 2
    assert adjusted[0] == pytest.approx(0.8) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.8)
    assert report.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1


def test_paired_test_matches_the_closed_form_of_student_t_with_2_degrees_of_freedom():
    # d = 1, 2, 3: mean 2, std 1, t = 2 sqrt(3). With 2 df, P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2)), so
    # p = 1 - t / sqrt(2 + t^2); the 97.5% quantile solves that CDF: 0.95 sqrt(2 / (4 * 0.975 * 0.025)).
    test = report.paired_test([1.0, 2.0, 3.0])
    t = 2 * math.sqrt(3)
    half = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025)) / math.sqrt(3)
    assert test.n == 3 and test.mean == pytest.approx(2.0)
    assert test.p == pytest.approx(1 - t / math.sqrt(2 + t**2), rel=1e-9)
    assert (test.low, test.high) == pytest.approx((2 - half, 2 + half))
    assert report.paired_test([0.0, 0.0]).p == 1.0
    # A constant nonzero shift has no spread to test it against: no interval, no p (not p = 0).
    shift = report.paired_test([0.1, 0.1, 0.1])
    assert math.isnan(shift.p) and math.isnan(shift.low) and math.isnan(shift.high)
    assert math.isnan(report.paired_test([0.3]).p)


# --------------------------------------------------------------------------- over-fitting


def test_overfit_detected_when_train_accuracy_is_high_and_val_nll_rose():
    found = report.detect_overfit({0: 0.95, 1: 0.992}, {0: 0.4, 1: 0.3, 2: 0.33, 3: 0.41})
    assert found.overfitted and (found.best_epoch, found.best_val_nll, found.last_epoch) == (1, 0.3, 3)
    assert found.rise == pytest.approx(0.11)


def test_no_overfit_below_the_accuracy_threshold_or_with_the_minimum_at_the_last_epoch():
    assert not report.detect_overfit({0: 0.9, 1: 0.989}, {0: 0.4, 1: 0.3, 2: 0.5}).overfitted
    # A rise below 5% of the minimum is an epoch's wobble: 0.3 -> 0.3003 (0.1%) and 0.314 (4.7%) are not
    # over-fitting, 0.315 (5%) is.
    for last, expected in ((0.3003, False), (0.314, False), (0.315, True)):
        assert report.detect_overfit({0: 0.995}, {0: 0.4, 1: 0.3, 2: last}).overfitted is expected, last
    last = report.detect_overfit({0: 0.99, 1: 1.0}, {0: 0.4, 1: 0.3, 2: 0.2})
    assert not last.overfitted and last.best_epoch == 2 and last.rise == 0
    assert report.detect_overfit({0: 1.0}, {0: 0.2, 1: 0.2}).best_epoch == 0  # ties: the earliest epoch
    assert report.detect_overfit({}, {0: 0.2}) is None


# --------------------------------------------------------------------------- findings on the store


def test_planted_difference_has_the_hand_computed_mean_and_an_interval_above_zero(store, built):
    _, _, scores = store
    found, _ = built
    ece = _get(found, "loss=focal", "ECE")
    planted = [scores["focal", s]["ece"] - scores["cce", s]["ece"] for s in SEEDS]
    assert min(planted) > 0.05  # the planted effect is real in every seed
    assert ece.seeds.mean == pytest.approx(np.mean(planted)) and ece.primary.mean == pytest.approx(np.mean(planted))
    assert 0 < ece.primary.low < ece.primary.mean < ece.primary.high
    # The primary interval holds the test set's noise besides the seeds': its se is the root of both parts.
    assert ece.primary.se == pytest.approx(math.hypot(ece.primary.se_seeds, ece.primary.se_test))
    assert ece.primary.se_test > 0 and ece.primary.se_seeds == pytest.approx(np.std(planted, ddof=1) / math.sqrt(3))
    # The test-set bootstrap sees it in every seed pair; its observed differences are those of the logged metrics.
    assert ece.bootstrap.pairs == 3 and ece.bootstrap.excluding_zero == 3
    assert ece.bootstrap.difference == pytest.approx(np.mean(planted), abs=1e-9)
    assert 0 < ece.bootstrap.low < ece.bootstrap.difference < ece.bootstrap.high
    # Dividing logits by a constant keeps the argmax: no accuracy difference at all, in any resample.
    accuracy = _get(found, "loss=focal", "accuracy")
    assert accuracy.seeds.mean == 0 and (accuracy.primary.low, accuracy.primary.high) == (0, 0)


def test_noise_has_intervals_spanning_zero(built):
    found, _ = built
    for compared in F.COMPARED:
        primary = _get(found, "loss=sparse_cce", compared.label).primary
        assert primary.low < 0 < primary.high, compared


def test_comparisons_are_exploratory_in_the_tables_order_and_the_questions_a_family_of_their_own(built):
    found, text = built
    assert [(c.row.variant, c.compared.label) for c in found.comparisons] == [
        (variant, c.label) for variant in ("loss=focal", "loss=sparse_cce") for c in F.COMPARED
    ]
    # Holm over the 3 declared questions only, not over the 12 comparisons.
    assert [a.p_holm for a in found.answers] == pytest.approx(report.holm([a.p for a in found.answers]))
    smallest = min(found.answers, key=lambda a: a.p)
    assert smallest.p_holm == pytest.approx(min(1.0, 3 * smallest.p))  # m = 3 questions, not 12 + 3 tests
    assert [a.verdict for a in found.answers] == ["supported", "undecided", "supported"]
    section = text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert "### Exploratory comparisons" in section and "significant" not in section


def test_each_declared_question_is_one_answer_with_its_numbers_and_verdict(built):
    found, text = built
    q1, q2, q3 = found.answers
    (part,) = q1.parts
    p = part.primary
    assert p.mean == pytest.approx(_get(found, "loss=focal", "ECE").primary.mean)
    answers = readme.parse_answers(text.splitlines())
    assert [(a.question.split(":")[0], a.verdict) for a in answers][0] == ("Q1", "supported") and len(answers) == 3
    assert answers[0].numbers == (
        f"`loss=focal` [custom] against `loss=cce` [custom] on mnist, predicted higher: ECE {p.mean:+.4f} "
        f"[{p.low:+.4f}, {p.high:+.4f}] over 3 seeds (higher); p_Holm < 0.001"
    )
    assert "(interval spans 0); p_Holm = " in answers[1].numbers and answers[1].verdict == "undecided"
    # A property of one row: the baseline's logits are sharp and right 4 times in 5, so it is under-confident.
    assert answers[2].question == "Q3: CE is under-confident"
    assert answers[2].numbers.startswith("`loss=cce` [custom] alone on mnist, predicted lower")
    assert "- **Regime:** mnist: `dataset.limit.train`=20000, `trainer.epochs`=4, `model.name`=mlp, seeds 0, 1, 2" in (
        text
    )
    assert "- **Baseline:** mnist: `loss=cce` [custom] (automatic" in text


@pytest.mark.slow
def test_study_baseline_param_and_override_choose_the_row(tmp_path):
    uri, client, _ = _make_store(tmp_path, seeds=(0, 1))
    client_, launch = load_launch(STUDY, uri)
    groups = group_jobs(launch.jobs)
    found = F.compute_findings(client_, groups, launch.sweep, {"loss": "sparse_cce"})
    assert (
        found.baselines["mnist"].variant == "loss=sparse_cce" and "`study.baseline: {loss: sparse_cce}`" in found.rule
    )
    with pytest.raises(ReportError, match=r"study.baseline=\{loss.impl: custom\} matches 3 rows of mnist"):
        F.compute_findings(client_, groups, launch.sweep, {"loss.impl": "custom"})
    with pytest.raises(ReportError, match=r"study.baseline=\{loss: bce\} matches no row"):
        F.compute_findings(client_, groups, launch.sweep, {"loss": "bce"})
    # As a study sets it: the runs' params study.baseline.<key>; the report then compares with that row.
    for job in launch.jobs:
        client.log_param(job.run_id, "study.baseline.loss", "focal")
    path = report.build_report(STUDY, tracking_uri=uri, out_dir=tmp_path / "out")
    assert "- **Baseline:** mnist: `loss=focal` [custom] (`study.baseline: {loss: focal}` from the study's config)" in (
        path.read_text()
    )


def test_auto_baseline_prefers_custom_cce_then_builtin_when_rows_differ_by_implementation_only(store):
    _, launch = load_launch(STUDY, store[0])
    rows = F.rows_of(group_jobs(launch.jobs))["mnist"]
    assert F.auto_baseline(rows, launch.sweep).variant == "loss=cce"
    cce = next(row for row in rows if row.variant == "loss=cce")
    custom, builtin = cce, cce._replace(impl="builtin")
    assert F.auto_baseline([custom, builtin], launch.sweep) is builtin
    assert F.auto_baseline([builtin, custom, rows[1]], launch.sweep) is custom


# --------------------------------------------------------------------------- the other tables


def _table_row(text: str, heading: str, variant: str) -> dict[str, str]:
    lines = text.split(heading + "\n", 1)[1].split("\n#", 1)[0].splitlines()
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    header, _, *rows = table
    (row,) = [dict(zip(header, r, strict=True)) for r in rows if r[0] == variant]
    return row


def test_recalibration_table_shows_mean_and_interval_per_method_and_the_best(store, built):
    _, _, scores = store
    row = _table_row(built[1], "### Test ECE after recalibration", "loss=focal")
    for method, offset in RECAL.items():
        values = np.array([scores["focal", s]["ece"] + offset for s in SEEDS])
        half = 4.302653 * values.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
        assert row[method] == f"{values.mean():.4f} [{values.mean() - half:.4f}, {values.mean() + half:.4f}]"
    assert row["best on validation"] == "–"  # the store logs no validation predictions
    assert row["none"].startswith(f"{np.mean([scores['focal', s]['ece'] for s in SEEDS]):.4f} [")


def test_bootstrap_interval_table_is_the_mean_of_the_runs_bounds(built):
    row = _table_row(built[1], "### 95% bootstrap intervals on the test set (mean of the runs' bounds)", "loss=cce")
    assert row["accuracy"] == f"[{CI[0] + 0.01:.4f}, {CI[1] + 0.01:.4f}]"  # seeds 0, 1, 2 add 0.01 on average
    assert set(row) == {"variant", "impl", "seeds", "accuracy"}  # only the columns whose runs logged intervals


def test_overfitting_table_appears_when_a_run_reaches_the_accuracy_threshold(built):
    cce = _table_row(built[1], "### Over-fitting", "loss=cce")
    assert cce["over-fitted"] == "3/3" and cce["final train accuracy"] == "0.9950"
    assert cce["val NLL min at epoch"] == "2 of 4, 2 of 4, 2 of 4" and cce["rise after min"] == "+0.1100"
    assert _table_row(built[1], "### Over-fitting", "loss=focal")["over-fitted"] == "0/3"


# --------------------------------------------------------------------------- README block


README = """# Project

Intro text that must stay.

<!-- findings:start -->
old, hand-written findings
<!-- findings:end -->

## After
Trailing text.
"""


def _readme_tree(tmp_path: Path, report_text: str) -> Path:
    (tmp_path / "experiments" / "a_study").mkdir(parents=True)
    (tmp_path / "experiments" / "a_study" / "REPORT.md").write_text(report_text)
    (tmp_path / "experiments" / "old_study").mkdir()
    (tmp_path / "experiments" / "old_study" / "REPORT.md").write_text("# Study report: old_study\n\n## Setup\n")
    readme_path = tmp_path / "README.md"
    readme_path.write_text(README)
    return readme_path


def test_readme_without_markers_is_a_clear_error(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# no markers\n")
    with pytest.raises(ReportError, match="expected one line <!-- findings:start --> followed by one line"):
        report.update_readme(path)
    path.write_text(f"{readme.END}\n{readme.START}\n")
    with pytest.raises(ReportError, match="in the wrong order"):
        report.update_readme(path)
    assert path.read_text() == f"{readme.END}\n{readme.START}\n"


@pytest.mark.subprocess
def test_cli_readme_rewrites_the_block_and_exits_2_on_missing_markers(built, tmp_path):
    path = _readme_tree(tmp_path, built[1])
    command = [sys.executable, "-m", "xent_lab.report", "--readme", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "findings block rewritten" in done.stdout and "old, hand-written" not in path.read_text()
    path.write_text("no markers\n")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(f"error: {path}: expected one line")


# --------------------------------------------------------------------------- two evaluations, baselines in strata
# A launch of trainer.keep=best_val_accuracy runs: each run logs the kept epoch's metrics and predictions (the
# logits above) and the last epoch's under last_epoch/ and in their own artifact: the kept logits times LAST
# (same argmax, more confident), so each run is two rows with known, different ECEs.
LAST = 3.0


def _make_keep_store(root: Path, within: str | None = None):
    uri, client, scores = _make_store(root, seeds=(0, 1))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)  # the labels _make_store drew first from the same seed
    last_scores = {}
    for run in client.search_runs([client.get_experiment_by_name(STUDY).experiment_id], "tags.`xent.role` = 'child'"):
        run_id, loss, seed = run.info.run_id, run.data.tags["loss"], int(run.data.tags["seed"])
        folder = root / run_id
        kept = calibration.load_predictions(folder / "test_predictions.npz")
        assert np.array_equal(kept.labels, labels)
        last = LAST * kept.logits
        scores_last = calibration.calibration_metrics(calibration.probabilities(last, "softmax"), labels, 15)
        last_scores[loss, seed] = scores_last
        metrics = {"last_epoch/test/ece": scores_last["ece"], "last_epoch/test/accuracy": scores_last["accuracy"]}
        metrics["perf/epochs_run"] = 4
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), T0, 4) for k, v in metrics.items()],
            params=[Param("trainer.keep", "best_val_accuracy")]
            + ([Param("study.baseline_within", within)] if within is not None else []),
        )
        client.set_tag(run_id, "xent.keep", "best_val_accuracy")
        path = calibration.save_predictions(folder / "test_predictions_last_epoch.npz", last, labels, "softmax")
        client.log_artifact(run_id, str(path), "predictions")
    return uri, client, scores, last_scores


@pytest.mark.slow
def test_a_run_kept_at_its_best_epoch_is_two_rows_reading_their_own_metrics_and_predictions(tmp_path):
    uri, client, scores, last_scores = _make_keep_store(tmp_path)
    client_, launch = load_launch(STUDY, uri)
    assert len(launch.jobs) == 6  # runs, not evaluations
    rows = {(row.variant, row.impl): row for row in F.rows_of(group_jobs(launch.jobs))["mnist"]}
    assert sorted(variant for variant, _ in rows) == [
        f"loss={loss}, trainer.keep={keep}"
        for loss in ("cce", "focal", "sparse_cce")
        for keep in ("best_val_accuracy", "last")
    ]
    last = rows["loss=focal, trainer.keep=last", "custom"]
    best = rows["loss=focal, trainer.keep=best_val_accuracy", "custom"]
    for job in last.jobs:
        assert job.metric("test/ece") == pytest.approx(last_scores["focal", int(job.seed)]["ece"])
        assert job.metric("test/nll") is None  # the kept epoch's own test/nll is not the last epoch's
        assert job.metric("train/kept_epoch") == 3  # the last of 4 epochs, from 0
        assert job.metrics["perf/epochs_run"] == 4
        predictions = job_predictions(client_, job, tmp_path / "download")
        assert np.allclose(
            predictions.logits,
            LAST * calibration.load_predictions(tmp_path / job.run_id / "test_predictions.npz").logits,
        )
    for job in best.jobs:
        assert job.metric("test/ece") == pytest.approx(scores["focal", int(job.seed)]["ece"])
        assert "last_epoch/test/ece" not in job.metrics
    # A baseline without trainer.keep now matches two rows of each loss.
    with pytest.raises(ReportError, match=r"study.baseline=\{loss: cce\} matches 2 rows of mnist"):
        F.compute_findings(client_, group_jobs(launch.jobs), launch.sweep, {"loss": "cce"})


@pytest.mark.slow
def test_baseline_within_compares_each_row_with_the_baseline_of_its_stratum(tmp_path):
    uri, client, scores, last_scores = _make_keep_store(tmp_path, within="['trainer.keep']")
    client_, launch = load_launch(STUDY, uri)
    groups = group_jobs(launch.jobs)
    found = F.compute_findings(client_, groups, launch.sweep, {"loss": "cce"})  # within from the runs' params
    assert {name: row.variant for name, row in found.baselines.items()} == {
        "mnist (trainer.keep=best_val_accuracy)": "loss=cce, trainer.keep=best_val_accuracy",
        "mnist (trainer.keep=last)": "loss=cce, trainer.keep=last",
    }
    pairs = {(c.row.variant, c.baseline.variant) for c in found.comparisons}
    assert pairs == {
        (f"loss={loss}, trainer.keep={keep}", f"loss=cce, trainer.keep={keep}")
        for loss in ("focal", "sparse_cce")
        for keep in ("best_val_accuracy", "last")
    }
    ece = [
        c for c in found.comparisons if c.row.variant == "loss=focal, trainer.keep=last" and c.compared.label == "ECE"
    ]
    expected = np.mean([last_scores["focal", s]["ece"] - last_scores["cce", s]["ece"] for s in (0, 1)])
    assert len(ece) == 1 and ece[0].seeds.mean == pytest.approx(expected)
    assert "within strata (`study.baseline_within`)" in found.rule and "not compared" in found.rule
    # A stratum without the baseline's values gets none, and its rows are not compared.
    lone = F.compute_findings(client_, groups, launch.sweep, {"loss": "cce", "trainer.keep": "last"})
    assert lone.baselines["mnist (trainer.keep=best_val_accuracy)"] is None
    assert {c.row.variant for c in lone.comparisons} == {
        "loss=focal, trainer.keep=last",
        "loss=sparse_cce, trainer.keep=last",
    }
    # Empty within: today's one baseline per dataset; an unknown key is an error.
    assert F.compute_findings(
        client_, groups, launch.sweep, {"loss": "cce", "trainer.keep": "last"}, []
    ).baselines.keys() == {"mnist"}
    with pytest.raises(
        ReportError, match=r"study.baseline_within=\['trainer.kept'\]: no run has the key\(s\) trainer.kept"
    ):
        F.compute_findings(client_, groups, launch.sweep, {"loss": "cce"}, ["trainer.kept"])


@pytest.mark.slow
def test_report_of_two_evaluations_counts_runs_and_shows_a_row_each(tmp_path):
    uri, _, scores, last_scores = _make_keep_store(tmp_path, within="['trainer.keep']")
    for job in load_launch(STUDY, uri)[1].jobs:
        MlflowClient(uri).log_param(job.run_id, "study.baseline.loss", "cce")
    text = report.build_report(STUDY, tracking_uri=uri, out_dir=tmp_path / "out").read_text()
    assert "6 jobs: 6 finished" in text and "6 of the runs evaluated twice" in text
    row = _table_row(text, "### Mean ± std over seeds", "loss=cce, trainer.keep=last")
    values = np.array([last_scores["cce", s]["ece"] for s in (0, 1)])
    assert row["ECE"] == f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" and row["seeds"] == "2"
    kept = np.array([scores["cce", s]["ece"] for s in (0, 1)])
    assert _table_row(text, "### Mean ± std over seeds", "loss=cce, trainer.keep=best_val_accuracy")["ECE"] == (
        f"{kept.mean():.4f} ± {kept.std(ddof=1):.4f}"
    )
    assert "mnist (trainer.keep=last): `loss=cce, trainer.keep=last` [custom]" in text


def _metrics_job(seed: int, metrics: dict[str, float]) -> Job:
    info = RunInfo(f"r{seed}", "0", "", "FINISHED", 0, 1, "active", run_name="r")
    run_tags = [RunTag(T.IMPL, "custom"), RunTag(T.SEED, str(seed)), RunTag(T.LOSS, "cce")]
    return Job(Run(info, RunData([Metric(k, v, 0, 0) for k, v in metrics.items()], [], run_tags)), reused=False)


def test_calibration_before_and_after_temperature_scaling_table():
    def logged(name: str, value: float, low: float, high: float) -> dict[str, float]:
        return {name: value, f"{name}/{T.CI_LOW}": low, f"{name}/{T.CI_HIGH}": high}

    jobs = []
    for seed in (0, 1):
        metrics: dict[str, float] = {}
        for name in ("ece", "adaece", "classwise_ece"):
            shift = seed * 0.02
            metrics |= logged(T.test_metric(name), 0.10 + shift, 0.08 + shift, 0.12 + shift)
            metrics |= logged(T.recal_metric("temperature", name), 0.02, 0.01, 0.03 + shift)
        jobs.append(_metrics_job(seed, metrics))
    lines = tables.temperature_section({"loss=cce": {"custom": jobs}})
    row = next(line for line in lines if line.startswith("| loss=cce"))
    # before: mean 0.11, bounds means [0.09, 0.13]; after: 0.02, [0.01, 0.04], for each of the three errors
    assert row == "| loss=cce | custom | 2 |" + " 0.1100 [0.0900, 0.1300] | 0.0200 [0.0100, 0.0400] |" * 3
    assert tables.temperature_section({"loss=cce": {"custom": [_metrics_job(0, {T.TEST_ECE: 0.1})]}}) == []

"""The stability study: the zero-gradient probe on hand-built outputs, the epsilon rule, divergence as a result
(trainer.on_nonfinite), and a mini `experiment=stability` launch in which the naive path diverges and the stable
path does not."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

from tests.helpers.e2e import QUICK, compose_config, latest_run, refused_here, run_train, runs, train_here
from xent_lab import config
from xent_lab.errors import ConfigError, NonFiniteLossError, NotApplicable
from xent_lab.losses import CategoricalCrossentropy, naive
from xent_lab.report import stability
from xent_lab.report.load import Job
from xent_lab.tracking import tags as T
from xent_lab.training.probe import count_gradients, loss_gradients, misclassified

# Class 0 is true; its probability 1e-9 is below Keras' epsilon (1e-7): a confident mistake.
P_TRUE = 1e-9
PROBS = np.array([[P_TRUE, 1.0 - P_TRUE, 0.0]], dtype="float32")
ONEHOT = np.array([[1.0, 0.0, 0.0]], dtype="float32")


@pytest.mark.parametrize(
    "loss", [keras.losses.CategoricalCrossentropy(), CategoricalCrossentropy()], ids=["builtin", "custom"]
)
def test_the_probability_path_clips_a_confident_mistake_to_a_zero_gradient(loss):
    gradients = loss_gradients(loss, ONEHOT, PROBS)
    assert np.all(gradients == 0)
    assert count_gradients(gradients, misclassified(PROBS, np.array([0]))) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    "loss", [keras.losses.CategoricalCrossentropy(from_logits=True), CategoricalCrossentropy(from_logits=True)]
)
def test_the_logit_path_still_corrects_the_same_mistake(loss):
    logits = np.log(np.array([[P_TRUE, 1.0 - P_TRUE, 1e-30]], dtype="float64")).astype("float32")
    gradients = loss_gradients(loss, ONEHOT, logits)
    # d CE / d z = softmax(z) - y: about -1 for the true class, +1 for the predicted one.
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(gradients, softmax - ONEHOT, atol=1e-6)
    assert gradients[0, 0] == pytest.approx(-1.0, abs=1e-6)
    assert count_gradients(gradients, np.array([True])) == (0.0, 0.0, 0.0)


def test_the_naive_loss_at_p_zero_has_a_gradient_of_minus_one_over_epsilon():
    probs = np.array([[0.0, 1.0, 0.0]], dtype="float32")
    gradients = loss_gradients(naive.CategoricalCrossentropy(), ONEHOT, probs)
    # -d log(p + eps) / dp at p = 0: -1 / eps on the true class, nothing elsewhere.
    assert gradients[0, 0] == pytest.approx(-1.0 / naive.EPSILON, rel=1e-5)
    assert np.all(gradients[0, 1:] == 0)
    assert count_gradients(gradients, np.array([True])).zero == 0.0


def test_gradient_counts_and_misclassification_by_hand():
    gradients = np.array([[0.0, 0.0], [0.0, 0.0], [0.5, -0.5], [np.nan, 0.0]])
    wrong = np.array([True, False, True, False])
    assert count_gradients(gradients, wrong) == (0.5, 0.25, 0.25)
    assert list(misclassified(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))) == [False, True]
    # One sigmoid unit: logits are thresholded at 0, probabilities at 0.5.
    assert list(misclassified(np.array([[-2.0], [3.0]]), np.array([1, 1]))) == [True, False]
    assert list(misclassified(np.array([[0.4], [0.6]]), np.array([1, 1]))) == [True, False]


# --------------------------------------------------------------------------- config


def test_epsilon_applies_to_the_naive_loss_only(tmp_path, cache_dir):
    config.validate(compose_config(tmp_path, cache_dir, "loss.impl=naive", "loss.epsilon=1e-7"))
    config.validate(compose_config(tmp_path, cache_dir, "loss.impl=custom"))  # the default epsilon: fine
    for impl in ("custom", "builtin"):
        with pytest.raises(NotApplicable, match=f"loss.epsilon=1e-07: expected 1e-15 .* loss.impl='{impl}'"):
            config.validate(compose_config(tmp_path, cache_dir, f"loss.impl={impl}", "loss.epsilon=1e-7"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite='ignore': expected one of fail, record"),
        ("trainer.gradient_probe=-1", "trainer.gradient_probe=-1: expected a number of training samples >= 0"),
    ],
)
def test_bad_trainer_values_name_their_key(tmp_path, cache_dir, override, message):
    with pytest.raises(ConfigError, match=message):
        config.validate(compose_config(tmp_path, cache_dir, override))


def test_a_single_run_with_a_stray_epsilon_is_a_one_line_error(tmp_path, cache_dir):
    done = refused_here(tmp_path, cache_dir, QUICK, "loss.impl=builtin", "loss.epsilon=1e-7")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "loss.epsilon=1e-07" in errors[0] and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- divergence

EXPLODE = ("trainer.optimizer._target_=keras.optimizers.SGD", "trainer.optimizer.learning_rate=1e30")


@pytest.mark.slow
def test_a_failed_divergence_still_says_where(tmp_path, cache_dir):
    with pytest.raises(NonFiniteLossError, match=r"diverged at step \d+ \(epoch 0, batch \d+\)"):
        train_here(tmp_path, cache_dir, QUICK, *EXPLODE)
    run = latest_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags[T.DIVERGED] == "true"
    assert T.DIVERGED_STEP in run.data.metrics


@pytest.mark.slow
def test_a_recorded_divergence_finishes_the_run_without_test_metrics(tmp_path, cache_dir):
    record = ("trainer.on_nonfinite=record", "trainer.gradient_probe=64")
    trained = train_here(tmp_path, cache_dir, QUICK, *EXPLODE, *record)
    run = trained.run
    step = run.data.metrics[T.DIVERGED_STEP]
    assert run.info.status == "FINISHED" and run.data.tags[T.DIVERGED] == "true"
    # debug=quick: 2000 samples in batches of 128 = 16 steps in the one epoch.
    assert 0 <= step < 16 and T.TEST_ACCURACY not in run.data.metrics and T.TEST_ACCURACY not in trained.results
    assert f"diverged at step {step:.0f} (epoch 0, batch {step:.0f})" in run.data.tags[T.NOTE]
    assert T.ZERO_GRAD_FRACTION not in run.data.metrics  # NaN weights: nothing left to probe


# --------------------------------------------------------------------------- the study, end to end


@pytest.mark.subprocess
def test_mini_stability_study_the_naive_path_diverges_and_the_stable_path_does_not(tmp_path, cache_dir):
    report_dir = tmp_path / "report"
    sweep = [
        "loss.impl=naive,custom",
        "loss.from_logits=true",
        "trainer.optimizer.learning_rate=0.1",
        "trainer.precision=float32",
        "loss.epsilon=1e-15,1e-7",
        "seed=0",
    ]
    done = run_train(
        tmp_path, cache_dir, "experiment=stability", QUICK, f"study.report_dir={report_dir}", *sweep, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("not applicable, skipped") == 1  # custom with epsilon 1e-7
    children = [r for r in runs(tmp_path, "stability") if r.data.tags.get(T.ROLE) == T.ROLE_CHILD]
    by_impl = {}
    for child in children:
        by_impl.setdefault(child.data.tags[T.IMPL], []).append(child)
    assert sorted((impl, len(found)) for impl, found in by_impl.items()) == [("custom", 1), ("naive", 2)]
    for run in by_impl["naive"]:
        assert run.info.status == "FINISHED" and run.data.tags.get(T.DIVERGED) == "true"
        assert T.DIVERGED_STEP in run.data.metrics and T.TEST_ACCURACY not in run.data.metrics
    custom = by_impl["custom"][0]
    assert custom.info.status == "FINISHED" and T.DIVERGED not in custom.data.tags
    assert T.TEST_ACCURACY in custom.data.metrics and T.ZERO_GRAD_FRACTION in custom.data.metrics

    report = (report_dir / "REPORT.md").read_text()
    stability = report[report.index("## Stability") :]
    for epsilon in ("1e-15", "1e-07"):
        path = f"cce naive from logits, float32, ε={epsilon}"
        assert f"- **{path}**: diverges from lr 0.1 (1/1 seeds there)." in stability
    assert "- **cce custom from logits, float32**: no divergence up to lr 0.1." in stability
    naive_rows = [line for line in stability.splitlines() if line.startswith("| cce | naive |")]
    assert len(naive_rows) == 2 and all("| 1/1 |" in row for row in naive_rows)
    # The results table counts the diverged runs apart instead of as seeds without values.
    header = next(line for line in report.splitlines() if line.startswith("| variant | impl | seeds | failed |"))
    assert "| diverged |" in header
    overrides = [json.loads(r.data.tags[T.JOB_OVERRIDES]) for r in by_impl["naive"]]
    assert sorted(float(o["loss.epsilon"]) for o in overrides) == [1e-15, 1e-7]


def _job(impl: str, seed: int, accuracy: float | None, lr: float = 0.03) -> Job:
    """A finished run of the stability grid as the report reads it (diverged when accuracy is None)."""
    metrics = [Metric(T.TEST_ACCURACY, accuracy, 0, 0)] if accuracy is not None else [Metric(T.DIVERGED_STEP, 1, 0, 0)]
    params = {"loss.from_logits": "True", "trainer.optimizer.learning_rate": str(lr), "trainer.precision": "float32"}
    params["loss.epsilon"] = "1e-15"
    run_tags = {T.IMPL: impl, T.SEED: str(seed), T.LOSS: "cce", **({T.DIVERGED: "true"} if accuracy is None else {})}
    info = RunInfo(f"{impl}{seed}", "0", "", "FINISHED", 0, 1, "active", run_name="r")
    data = RunData(metrics, [Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in run_tags.items()])
    return Job(Run(info, data), reused=False)


def test_paths_are_equal_only_when_the_paired_interval_lies_inside_the_margin():
    custom = [0.900, 0.910, 0.920]
    # Shifts 0.001, 0.0012, 0.0008: interval 0.001 ± 4.303 x 0.0002 / sqrt(3) = [0.0005, 0.0015], inside ±0.005.
    # (A constant shift has no spread to build an interval from: `stats.paired_test` leaves it untested.)
    builtin = [a + shift for a, shift in zip(custom, (0.001, 0.0012, 0.0008), strict=True)]
    naive_close = [0.902, 0.905, 0.925]  # differences +0.002 -0.005 +0.005: mean 0.0007, interval wider than ±0.005
    jobs = [_job("custom", s, a) for s, a in enumerate(custom)]
    jobs += [_job("builtin", s, a) for s, a in enumerate(builtin)]
    jobs += [_job("naive", s, a) for s, a in enumerate(naive_close)]
    jobs += [_job("naive", s, None, lr=0.1) for s in range(3)] + [_job("custom", s, 0.5, lr=0.1) for s in range(3)]
    sentences = "\n".join(stability.agreement_sentences(stability.rows_of(jobs)))
    assert (
        "**cce builtin from logits, float32** does not differ from custom (within ±0.005): test accuracy Δ +0.0010"
        in (sentences)
    )
    assert "**cce naive from logits, float32, ε=1e-15** is not shown equal to or different from custom" in sentences
    assert (
        "lr 0.1, float32: **cce naive from logits, float32, ε=1e-15** differs from custom: 3 more diverged" in sentences
    )

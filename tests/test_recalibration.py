"""Tests of xent_lab.calibration.recalibration and scoring: hand-computed fits, recovery of known distortions,
input checks; and end to end, a run that logs every configured method and `python -m xent_lab.calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import special

from tests.helpers.e2e import QUICK, artifact_paths, store_uri, train_here
from xent_lab import calibrate
from xent_lab import calibration as cal
from xent_lab.calibration.recalibration import MIN_FIT_SAMPLES
from xent_lab.errors import XentError
from xent_lab.tracking import tags as T


def _draw(rng, probs):
    return (probs.cumsum(axis=1) < rng.uniform(size=(len(probs), 1))).sum(axis=1).clip(0, probs.shape[1] - 1)


def _distorted(rng, n, weights, bias):
    """Logits z and labels drawn from softmax(W z + b): the model is miscalibrated by a known affine map."""
    logits = rng.normal(size=(n, len(bias))) * 2.5
    truth = special.softmax(logits @ weights.T + bias, axis=1)
    return logits, _draw(rng, truth), truth


def test_registry_and_heads():
    assert set(cal.RECALIBRATORS) == {
        "temperature",
        "vector",
        "matrix",
        "dirichlet",
        "isotonic",
        "histogram",
        "platt",
        "beta",
    }
    assert cal.methods_for("sigmoid") == ("temperature", "isotonic", "histogram", "platt", "beta")
    assert cal.methods_for("softmax") == cal.methods_for("sigmoid_ovr")
    assert cal.methods_for("softmax") == ("temperature", "vector", "matrix", "dirichlet", "isotonic", "histogram")
    assert cal.resolve_methods(cal.ALL_METHODS, "sigmoid") == list(cal.methods_for("sigmoid"))
    assert cal.resolve_methods(["isotonic", "platt"], "sigmoid") == ["isotonic", "platt"]


# Dirichlet maps ln P = z - logsumexp(z), not z: W ln P + b is W z + b only when the rows of W have equal sums,
# so it comes close to the true model without being it.
@pytest.mark.parametrize(("name", "nll_tolerance"), [("matrix", 0.005), ("dirichlet", 0.02)])
def test_matrix_and_dirichlet_recover_an_affine_distortion(name, nll_tolerance):
    rng = np.random.default_rng(7)
    weights = np.array([[0.5, 0.2, 0.0, -0.1], [0.0, 0.7, 0.1, 0.0], [0.1, 0.0, 0.4, 0.2], [0.0, -0.2, 0.0, 0.6]])
    bias = np.array([0.3, -0.2, 0.0, 0.1])
    val_logits, val_labels, _ = _distorted(rng, 5000, weights, bias)
    test_logits, test_labels, truth = _distorted(rng, 20000, weights, bias)
    fitted = cal.recalibrator(name, "softmax").fit(val_logits, val_labels)
    true_ece = cal.ece(truth, test_labels)
    assert cal.ece(special.softmax(test_logits, axis=1), test_labels) > 0.05
    assert cal.ece(fitted.predict_proba(test_logits), test_labels) == pytest.approx(true_ece, abs=0.01)
    fitted_nll = cal.nll(fitted.predict_proba(test_logits), test_labels)
    assert fitted_nll == pytest.approx(cal.nll(truth, test_labels), abs=nll_tolerance)
    if name == "matrix":  # softmax ignores a shift common to all classes: W is identified up to column means
        np.testing.assert_allclose(fitted.weights - fitted.weights.mean(0), weights - weights.mean(0), atol=0.05)
        np.testing.assert_allclose(fitted.bias - fitted.bias.mean(), bias - bias.mean(), atol=0.05)


def test_vector_scaling_recovers_a_diagonal_distortion():
    rng = np.random.default_rng(1)
    weights, bias = np.diag([0.4, 0.8, 1.5]), np.array([0.2, 0.0, -0.2])
    logits, labels, _ = _distorted(rng, 6000, weights, bias)
    fitted = cal.recalibrator("vector", "softmax").fit(logits, labels)
    np.testing.assert_allclose(fitted.weights, weights, rtol=0.1)
    assert set(fitted.params) == {"weights", "bias"} and len(fitted.params["weights"]) == 3


@pytest.mark.parametrize(("objective", "tolerance"), [("nll", 0.05), ("ece", 0.3)])
def test_temperature_recovers_a_known_temperature(objective, tolerance):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4000, 5)) * 3
    labels = _draw(rng, special.softmax(logits / 2.0, axis=1))
    fitted = cal.recalibrator("temperature", "softmax", objective=objective).fit(logits, labels)
    assert fitted.temperature == pytest.approx(2.0, abs=tolerance)
    np.testing.assert_array_equal(fitted.predict_proba(logits).argmax(1), logits.argmax(1))
    if objective == "nll":
        assert fitted.temperature == cal.fit_temperature(logits, labels, "softmax")


def test_isotonic_by_hand_and_monotone():
    # Scores .1 .2 .3 .4 with outcomes 0 1 0 1 (each five times): pooling the violators .2 and .3 gives 0 .5 .5 1.
    scores = np.repeat([0.1, 0.2, 0.3, 0.4], 5)
    labels = np.repeat([0, 1, 0, 1], 5)
    fitted = cal.recalibrator("isotonic", "sigmoid").fit(special.logit(scores), labels)
    np.testing.assert_allclose(
        fitted.predict_proba(special.logit([0.1, 0.2, 0.3, 0.4, 0.05, 0.9]))[:, 1], [0, 0.5, 0.5, 1, 0, 1], atol=1e-12
    )
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2000, 4)) * 2
    fitted = cal.recalibrator("isotonic", "softmax").fit(logits, _draw(rng, special.softmax(logits / 3, axis=1)))
    for column in fitted.params.values():
        assert np.all(np.diff(column["values"]) >= 0) and np.all(np.diff(column["knots"]) >= 0)
    probs = fitted.predict_proba(rng.normal(size=(500, 4)) * 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    z = np.sort(rng.normal(size=300) * 3)
    binary = cal.recalibrator("isotonic", "sigmoid").fit(rng.normal(size=300), rng.integers(0, 2, 300))
    assert np.all(np.diff(binary.predict_proba(z)[:, 1]) >= 0)


def test_histogram_binning_by_hand():
    # Two bins (lo, hi]: scores .2 (outcomes 0 0 0 1) and .7 (outcomes 1 1 1 0), each pattern five times.
    scores = np.tile([0.2, 0.2, 0.2, 0.2, 0.7, 0.7, 0.7, 0.7], 5)
    labels = np.tile([0, 0, 0, 1, 1, 1, 1, 0], 5)
    fitted = cal.recalibrator("histogram", "sigmoid", n_bins=2).fit(special.logit(scores), labels)
    np.testing.assert_allclose(
        fitted.predict_proba(special.logit([0.1, 0.45, 0.55, 0.99])),
        [[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]],
    )
    # One sigmoid: only the positive class is mapped; the edges are the knots.
    assert fitted.params == {"1": {"knots": [0.0, 0.5, 1.0], "values": [0.25, 0.75]}}


def test_platt_by_hand():
    # z = +1: 30 samples, 20 positive; z = -1: 30 samples, 10 positive. Platt's targets are 31/32 and 1/32, so the
    # mean target is .65625 at z = 1 and .34375 at z = -1: σ(a + c) = .65625, σ(-a + c) = .34375 -> c = 0,
    # a = ln(.65625 / .34375).
    z = np.repeat([1.0, -1.0], 30)
    labels = np.concatenate([np.repeat([1, 0], [20, 10]), np.repeat([1, 0], [10, 20])])
    fitted = cal.recalibrator("platt", "sigmoid").fit(z, labels)
    assert fitted.params["a"] == pytest.approx(np.log(0.65625 / 0.34375), abs=1e-5)
    assert fitted.params["c"] == pytest.approx(0.0, abs=1e-5)


def test_beta_recovers_its_map_and_keeps_its_bounds():
    rng = np.random.default_rng(4)
    z = rng.normal(size=20000) * 2
    s = special.expit(z)
    q = special.expit(2.0 * np.log(s) - 0.5 * np.log(1 - s) + 0.3)
    fitted = cal.recalibrator("beta", "sigmoid").fit(z, (rng.uniform(size=z.size) < q).astype(int))
    assert fitted.params == pytest.approx({"a": 2.0, "b": 0.5, "c": 0.3}, abs=0.1)
    # Labels that fall as s rises: the maximum likelihood wants a < 0; the bounds keep a, b >= 0.
    falling = cal.recalibrator("beta", "sigmoid").fit(z, (rng.uniform(size=z.size) > s).astype(int))
    assert falling.params["a"] >= 0 and falling.params["b"] >= 0


@pytest.mark.parametrize("name", sorted(cal.RECALIBRATORS))
def test_every_method_gives_distributions_and_json_params(name):
    rng = np.random.default_rng(5)
    head = "sigmoid" if name in ("platt", "beta") else "sigmoid_ovr"
    shape = (400,) if head == "sigmoid" else (400, 3)
    logits = rng.normal(size=shape) * 2
    fitted = cal.recalibrator(name, head).fit(logits, rng.integers(0, 2 if head == "sigmoid" else 3, 400))
    probs = fitted.predict_proba(rng.normal(size=shape))
    assert probs.shape == (400, 2 if head == "sigmoid" else 3)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1)
    json.dumps(fitted.params)


@pytest.mark.parametrize(
    ("build", "fit_args", "match"),
    [
        (lambda: cal.recalibrator("platt", "softmax"), None, "'platt' does not apply to a 'softmax' head"),
        (lambda: cal.recalibrator("matrix", "sigmoid"), None, "methods for sigmoid: temperature, isotonic"),
        (lambda: cal.recalibrator("bogus", "softmax"), None, "unknown recalibration method 'bogus'"),
        (lambda: cal.recalibrator("temperature", "softmax", objective="brier"), None, "objective must be"),
        (lambda: cal.recalibrator("vector", "softmax"), (np.zeros((MIN_FIT_SAMPLES - 1, 3)), None), "at least 20"),
        (lambda: cal.recalibrator("matrix", "softmax"), (np.full((30, 3), np.nan), None), "NaN"),
        (lambda: cal.recalibrator("isotonic", "softmax"), (np.zeros((30, 3)), np.full(30, 3)), "out of range"),
    ],
)
def test_bad_inputs_raise(build, fit_args, match):
    with pytest.raises(ValueError, match=match):
        method = build()
        logits, labels = fit_args
        method.fit(logits, np.zeros(len(logits), int) if labels is None else labels)


def test_predict_checks_fit_and_classes():
    method = cal.recalibrator("matrix", "softmax")
    with pytest.raises(RuntimeError, match="call fit"):
        method.predict_proba(np.zeros((3, 3)))
    method.fit(np.random.default_rng(0).normal(size=(50, 3)), np.arange(50) % 3)
    with pytest.raises(ValueError, match="fitted on 3 classes"):
        method.predict_proba(np.zeros((3, 4)))


def test_recalibrate_scores_each_method():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(1000, 3)) * 3
    labels = _draw(rng, special.softmax(logits / 2, axis=1))
    out = cal.recalibrate(
        logits[:500], labels[:500], logits[500:], labels[500:], "softmax", ["temperature", "matrix"], n_resamples=100
    )
    assert "accuracy" not in out["temperature"].scores.values  # temperature keeps the argmax
    assert {"accuracy", "ece", "smooth_ece", "debiased_ece", "ece_sweep"} <= set(out["matrix"].scores.values)
    assert set(out["matrix"].scores.intervals) == set(cal.BOOTSTRAP_METRICS)
    assert out["temperature"].scores.values["ece"] < cal.ece(special.softmax(logits[500:], axis=1), labels[500:])
    with pytest.raises(ValueError, match="does not apply"):  # every method is checked before any is fitted
        cal.recalibrate(logits, labels, logits, labels, "softmax", ["temperature", "platt"])


@pytest.mark.slow
def test_run_logs_every_method_and_calibrate_refits_it(tmp_path, cache_dir, capsys):
    methods = ["temperature", "vector", "matrix", "dirichlet", "isotonic", "histogram"]  # all, for a softmax head
    trained = train_here(tmp_path, cache_dir, QUICK, "calibration.methods=all", "calibration.bootstrap=200")
    metrics, run_id = trained.run.data.metrics, trained.run.info.run_id
    for name in cal.BOOTSTRAP_METRICS:  # smooth_ece and ece_sweep included
        assert metrics[f"{T.test_metric(name)}/{T.CI_LOW}"] <= metrics[f"{T.test_metric(name)}/{T.CI_HIGH}"], name
    for name in ("smooth_ece", "ece_sweep", "debiased_ece"):
        assert T.test_metric(name) in metrics
    assert T.TEST_ECE_TS in metrics and T.TEST_TEMPERATURE in metrics  # the old names stay
    for method in methods:
        assert T.recal_metric(method, "ece") in metrics, method
        assert f"{T.recal_metric(method, 'ece')}/{T.CI_HIGH}" in metrics
        assert (T.recal_metric(method, "accuracy") in metrics) == (method != "temperature")
    assert metrics[T.recal_metric("temperature", "ece")] == pytest.approx(metrics[T.TEST_ECE_TS])
    artifacts = artifact_paths(tmp_path, run_id)
    assert {T.VAL_PREDICTIONS_ARTIFACT, *(T.RECAL_PARAMS_ARTIFACT.format(method=m) for m in methods)} <= artifacts

    uri = store_uri(tmp_path)
    assert calibrate.main([run_id, "--methods", "beta", "--tracking-uri", uri]) == 2
    assert "'beta' does not apply to a 'softmax' head" in capsys.readouterr().err
    assert (
        calibrate.main([run_id, "--methods", "temperature,isotonic", "--tracking-uri", uri, "--bootstrap", "200"]) == 0
    )
    again = MlflowClient(uri).get_run(run_id).data.metrics
    for method in ("temperature", "isotonic"):  # the same fit and the same resamples as in the run
        assert again[T.recal_metric(method, "ece")] == pytest.approx(metrics[T.recal_metric(method, "ece")])
        assert again[f"{T.recal_metric(method, 'ece')}/{T.CI_LOW}"] == pytest.approx(
            metrics[f"{T.recal_metric(method, 'ece')}/{T.CI_LOW}"]
        )

    bare = MlflowClient(uri).create_run(trained.run.info.experiment_id).info.run_id
    with pytest.raises(XentError, match="has no predictions/val_predictions.npz"):
        calibrate.recalibrate_run(MlflowClient(uri), bare, ["temperature"])

"""Calibration metrics, reliability diagrams, temperature scaling and a per-epoch Keras callback.

Notation: n samples, k classes, probabilities P (n, k) with rows summing to one, integer labels y,
M bins. A binary positive-class probability p (shape (n,) or (n, 1)) is read as P = [1 - p, p].
The prediction is argmax_j P_ij (ties go to the lowest class index), its confidence c_i = max_j P_ij
and its correctness a_i = 1[argmax_j P_ij == y_i].

Binning (Guo et al. 2017, "On Calibration of Modern Neural Networks"): M equal-width bins
B_m = ((m-1)/M, m/M], m = 1..M, right-closed, with a confidence of exactly 0 in the first bin
(so 1.0 falls in the last). Edges are `np.linspace(0, 1, M + 1)`, and membership is decided against
those float edges, so the edges reported by `reliability_bins` are the ones actually used. This is
also the rule of scikit-learn 1.9's `calibration_curve(strategy="uniform")`.

- ECE = sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|, acc and conf the means of a_i and c_i in B_m.
- MCE = max over non-empty bins of |acc(B_m) - conf(B_m)|.
- Adaptive ECE (Nixon et al. 2019, "Measuring Calibration in Deep Learning"): the same sum over
  equal-mass bins. Sort the confidences ascending; the sample of rank r (0-based) goes to bin
  floor(r' M / n), r' the rank of the first sample with the same confidence. Without ties bin
  sizes are floor(n/M) or ceil(n/M); equal confidences always share a bin, so the value does not
  depend on the order of the samples (saturated 1.0 confidences are common). Bins are empty when
  n < M or when ties merge them.
- Classwise ECE (Kull et al. 2019, "Beyond temperature scaling"): the mean over classes j of the
  equal-width-bin ECE of the scores P_ij against the outcomes 1[y_i == j].
- Brier = (1/n) sum_i sum_j (P_ij - 1[y_i == j])^2, in [0, 2].
- NLL = -(1/n) sum_i log max(P_{i,y_i}, 1e-12): the clip keeps a zero true-class probability finite
  (at most -log 1e-12 ~ 27.6 nats per sample); it only touches predictions that are wrong with near
  certainty. (Temperature scaling computes its NLL from logits and needs no clip.)

Heads (`probabilities`): "softmax" logits (n, k) -> softmax; "sigmoid" one logit (n,) or (n, 1)
-> [1 - sigmoid(z), sigmoid(z)]; "sigmoid_ovr" k one-vs-rest logits (n, k) -> the k sigmoids
normalised to sum to one, P_ij = sigmoid(z_ij) / sum_l sigmoid(z_il). The normalisation is our
choice: it makes the k independent outputs a distribution that the multi-class metrics accept,
and it keeps the argmax (sigmoid is monotone), so accuracy is that of the raw logits.

Temperature scaling (Guo et al. 2017): one T in [0.01, 100] minimising the validation NLL of
logits / T (computed with log-softmax / log-sigmoid, no clipping). T > 0 never changes the argmax.

Inputs are checked, with a ValueError naming the problem and the offending shape or value: empty
input, NaN/inf, probabilities outside [0, 1] or rows not summing to 1 within 1e-3 (float32 rows are
fine), labels of the wrong shape, non-integer or outside [0, k), n_bins < 1, unknown heads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import optimize, special

from xent_lab.objectives import SIGMOID, SIGMOID_OVR, SOFTMAX

__all__ = [
    "HEADS",
    "CalibrationCallback",
    "Predictions",
    "ReliabilityBins",
    "accuracy",
    "adaptive_ece",
    "brier_score",
    "calibration_metrics",
    "classwise_ece",
    "ece",
    "fit_temperature",
    "load_predictions",
    "mce",
    "nll",
    "probabilities",
    "reliability_bins",
    "reliability_diagram",
    "save_predictions",
    "temperature_scaling_report",
]

HEADS = (SOFTMAX, SIGMOID, SIGMOID_OVR)
SUM_TOLERANCE = 1e-3  # |row sum - 1| allowed for probabilities (float32 softmax rows are ~1e-7 off)
NLL_EPS = 1e-12  # lower clip of the true-class probability in `nll`
# Search interval of the temperature; an optimum on a bound (e.g. a separable validation set,
# where the NLL keeps falling as T -> 0) returns the bound.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


# --------------------------------------------------------------------------- input validation


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one sample")
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains NaN or inf: {array[index]} at index {index} (shape {array.shape})")


def _check_labels(labels: Any, n: int, n_classes: int | None) -> np.ndarray:
    """Integer labels (n,) in [0, n_classes) (upper bound unchecked when n_classes is None)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must have shape ({n},) to match the {n} samples, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        fractional = ~np.isfinite(labels) | (labels != np.round(labels))
        if fractional.any():
            i = int(np.argmax(fractional))
            raise ValueError(f"labels must be integers, got {labels[i]} at index {i}")
    elif labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    high = np.inf if n_classes is None else n_classes
    outside = (labels < 0) | (labels >= high)
    if outside.any():
        i = int(np.argmax(outside))
        valid = "must be >= 0" if n_classes is None else f"must lie in [0, {n_classes - 1}]"
        raise ValueError(f"label {labels[i]} at index {i} is out of range: labels {valid}")
    return labels


def _check_probs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (P (n, k) float64, y (n,) int64); a binary (n,) or (n, 1) p becomes [1 - p, p]."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim not in (1, 2):
        raise ValueError(f"probs must have shape (n, k) or (n,) for a binary task, got shape {probs.shape}")
    _check_finite("probs", probs)
    low, high = probs.min(), probs.max()
    if low < 0 or high > 1:
        raise ValueError(f"probs must lie in [0, 1], found values in [{low:.6g}, {high:.6g}] (shape {probs.shape})")
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    deviation = np.abs(probs.sum(axis=1) - 1)
    if deviation.max() > SUM_TOLERANCE:
        i = int(np.argmax(deviation))
        raise ValueError(
            f"rows of probs must sum to 1 (tolerance {SUM_TOLERANCE:g}); row {i} sums to "
            f"{probs[i].sum():.6g} (shape {probs.shape}). Pass probabilities, not logits: see `probabilities`."
        )
    return probs, _check_labels(labels, len(probs), probs.shape[1])


def _check_logits(logits: Any, head: str) -> np.ndarray:
    """Validated float64 logits: (n,) for "sigmoid", (n, k) with k >= 2 for the other heads."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    logits = np.asarray(logits, dtype=np.float64)
    if head == SIGMOID:
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.ndim != 1:
            raise ValueError(f'head "sigmoid" takes one logit per sample, shape (n,) or (n, 1); got {logits.shape}')
    elif logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"head {head!r} takes logits of shape (n, k) with k >= 2, got {logits.shape}")
    _check_finite("logits", logits)
    return logits


# --------------------------------------------------------------------------- logits -> probabilities


def _log_probabilities(logits: np.ndarray, head: str) -> np.ndarray:
    """log P (n, k) from validated logits, computed without overflow or log(0).

    softmax: log_softmax(z). sigmoid: [log sigmoid(-z), log sigmoid(z)]. sigmoid_ovr: the
    normalised sigmoids in log space, log_softmax(log sigmoid(z)), which stays finite even when
    every sigmoid underflows.
    """
    if head == SOFTMAX:
        return special.log_softmax(logits, axis=1)
    if head == SIGMOID:
        return np.stack([special.log_expit(-logits), special.log_expit(logits)], axis=1)
    return special.log_softmax(special.log_expit(logits), axis=1)


def probabilities(logits: np.ndarray, head: str) -> np.ndarray:
    """Class probabilities (n, k) float64 that the metrics take; (n, 2) = [1 - p, p] for "sigmoid".

    See the module docstring for the per-head formulas (one-vs-rest sigmoids are normalised).
    """
    return np.exp(_log_probabilities(_check_logits(logits, head), head))


# --------------------------------------------------------------------------- binning machinery


def _uniform_bin_ids(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index m of the right-closed bin (edges[m], edges[m+1]] holding each score; 0 goes to bin 0.

    searchsorted(side="left") on the inner edges counts the inner edges strictly below the score.
    """
    return np.searchsorted(edges[1:-1], scores, side="left")


def _bin_means(
    bin_ids: np.ndarray, scores: np.ndarray, outcomes: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, mean score, mean outcome); the means are NaN in empty bins."""
    counts = np.bincount(bin_ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(bin_ids, weights=scores, minlength=n_bins) / counts
        mean_outcome = np.bincount(bin_ids, weights=outcomes, minlength=n_bins) / counts
    return counts, mean_score, mean_outcome


def _expected_gap(counts: np.ndarray, mean_score: np.ndarray, mean_outcome: np.ndarray) -> np.ndarray:
    """sum_m (n_m / n) |mean_outcome_m - mean_score_m| over the last axis; empty bins weigh 0."""
    weighted = np.where(counts > 0, counts * np.abs(mean_outcome - mean_score), 0.0)
    return weighted.sum(axis=-1) / counts.sum(axis=-1)


def _top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence c_i = max_j P_ij, correctness a_i = 1[argmax_j P_ij == y_i] as float)."""
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), predicted]
    return confidence, (predicted == labels).astype(np.float64)


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label statistics of M equal-width bins ((m-1)/M, m/M]; NaN means mark empty bins."""

    edges: np.ndarray  # (M + 1,) from 0 to 1
    counts: np.ndarray  # (M,) samples per bin
    confidence: np.ndarray  # (M,) mean confidence
    accuracy: np.ndarray  # (M,) mean correctness

    @property
    def gap(self) -> np.ndarray:
        """|accuracy - confidence| per bin (NaN where empty)."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|."""
        return float(_expected_gap(self.counts, self.confidence, self.accuracy))

    @property
    def mce(self) -> float:
        """max over non-empty bins of |acc(B_m) - conf(B_m)|."""
        return float(np.nanmax(self.gap))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy of the top label in n_bins equal-width bins."""
    _check_n_bins(n_bins)
    probs, labels = _check_probs(probs, labels)
    confidence, correct = _top_label(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, mean_confidence, mean_accuracy = _bin_means(
        _uniform_bin_ids(confidence, edges), confidence, correct, n_bins
    )
    return ReliabilityBins(edges, counts, mean_confidence, mean_accuracy)


# --------------------------------------------------------------------------- metrics


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error, sum_m (|B_m| / n) |acc(B_m) - conf(B_m)| (Guo et al. 2017)."""
    return reliability_bins(probs, labels, n_bins).ece


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error, max over non-empty bins of |acc(B_m) - conf(B_m)|."""
    return reliability_bins(probs, labels, n_bins).mce


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE over equal-mass bins (Nixon et al. 2019).

    With confidences sorted ascending, rank r goes to bin floor(r' M / n), r' the first rank holding
    the same confidence: bins of floor(n/M) or ceil(n/M) samples, except that ties share a bin.
    """
    _check_n_bins(n_bins)
    probs, labels = _check_probs(probs, labels)
    confidence, correct = _top_label(probs, labels)
    n = len(confidence)
    order = np.argsort(confidence)
    first_rank_of_value = np.searchsorted(confidence[order], confidence[order], side="left")
    bin_ids = np.empty(n, dtype=np.int64)
    bin_ids[order] = first_rank_of_value * n_bins // n
    return float(_expected_gap(*_bin_means(bin_ids, confidence, correct, n_bins)))


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """(1/k) sum_j ECE_j, ECE_j the equal-width-bin ECE of P_ij against 1[y_i == j] (Kull et al. 2019)."""
    _check_n_bins(n_bins)
    probs, labels = _check_probs(probs, labels)
    n_classes = probs.shape[1]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # One bincount over (class, bin) pairs: group j * M + m holds the scores of class j in bin m.
    groups = np.arange(n_classes) * n_bins + _uniform_bin_ids(probs, edges)
    outcomes = (labels[:, None] == np.arange(n_classes)).astype(np.float64)
    stats = _bin_means(groups.ravel(), probs.ravel(), outcomes.ravel(), n_classes * n_bins)
    per_class = _expected_gap(*(s.reshape(n_classes, n_bins) for s in stats))
    return float(per_class.mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i sum_j (P_ij - 1[y_i == j])^2 = (1/n) sum_i (sum_j P_ij^2 - 2 P_{i,y_i} + 1), in [0, 2]."""
    probs, labels = _check_probs(probs, labels)
    true_class = probs[np.arange(len(probs)), labels]
    return float(np.mean(np.sum(probs**2, axis=1) - 2 * true_class + 1))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """-(1/n) sum_i log max(P_{i,y_i}, NLL_EPS): the clip keeps a zero true-class probability finite."""
    probs, labels = _check_probs(probs, labels)
    true_class = probs[np.arange(len(probs)), labels]
    return float(-np.mean(np.log(np.maximum(true_class, NLL_EPS))))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i 1[argmax_j P_ij == y_i] (a binary p counts as class 1 only when p > 0.5)."""
    probs, labels = _check_probs(probs, labels)
    return float(np.mean(probs.argmax(axis=1) == labels))


def per_class_recall(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Recall of each class k: the fraction of samples of class k predicted as k (NaN for an absent class)."""
    probs, labels = _check_probs(probs, labels)
    n_classes = probs.shape[1]
    hits = np.bincount(labels[probs.argmax(axis=1) == labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """All metrics: keys "ece", "mce", "adaece", "classwise_ece", "brier", "nll", "accuracy"."""
    bins = reliability_bins(probs, labels, n_bins)
    return {
        "ece": bins.ece,
        "mce": bins.mce,
        "adaece": adaptive_ece(probs, labels, n_bins),
        "classwise_ece": classwise_ece(probs, labels, n_bins),
        "brier": brier_score(probs, labels),
        "nll": nll(probs, labels),
        "accuracy": accuracy(probs, labels),
    }


# --------------------------------------------------------------------------- temperature scaling


def _n_classes(logits: np.ndarray, head: str) -> int:
    return 2 if head == SIGMOID else logits.shape[1]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, head: str = SOFTMAX) -> float:
    """argmin over T in TEMPERATURE_BOUNDS of -(1/n) sum_i log P_{i,y_i}(logits / T).

    Bounded Brent search on log T (scipy.optimize.minimize_scalar). For softmax and sigmoid heads
    the NLL is convex in 1/T, hence unimodal in log T, which is what Brent's method needs.
    """
    logits = _check_logits(logits, head)
    labels = _check_labels(labels, len(logits), _n_classes(logits, head))
    rows = np.arange(len(labels))

    def objective(log_t: float) -> float:
        return -float(np.mean(_log_probabilities(logits / np.exp(log_t), head)[rows, labels]))

    result = optimize.minimize_scalar(
        objective, bounds=np.log(TEMPERATURE_BOUNDS), method="bounded", options={"xatol": 1e-6}
    )
    if not result.success:
        raise RuntimeError(f"temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))


def temperature_scaling_report(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    head: str,
    n_bins: int = 15,
) -> dict[str, float]:
    """Fits T on validation; test "nll", "ece", "brier", "accuracy" before, the same with "_ts" after, "temperature"."""
    temperature = fit_temperature(val_logits, val_labels, head)
    test_logits = _check_logits(test_logits, head)
    report: dict[str, float] = {"temperature": temperature}
    for suffix, scaled in (("", test_logits), ("_ts", test_logits / temperature)):
        metrics = calibration_metrics(probabilities(scaled, head), test_labels, n_bins)
        report.update({f"{key}{suffix}": metrics[key] for key in ("nll", "ece", "brier", "accuracy")})
    return report


# --------------------------------------------------------------------------- reliability diagram


def draw_reliability(axes: Axes, bins: ReliabilityBins) -> None:
    """Onto `axes`: one accuracy bar and one hatched "gap" bar (from accuracy to mean confidence) per
    non-empty bin, and the diagonal of perfect calibration, on [0, 1] x [0, 1]."""
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    widths = np.diff(bins.edges)
    filled = bins.counts > 0
    axes.bar(centers[filled], bins.accuracy[filled], widths[filled], color="tab:blue", edgecolor="black",
             label="Accuracy")
    axes.bar(centers[filled], (bins.confidence - bins.accuracy)[filled], widths[filled],
             bottom=bins.accuracy[filled], color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red", label="Gap")
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy")
    axes.legend(loc="upper left")


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, title: str = "") -> Figure:
    """Accuracy per confidence bin (bars) with the gap to the diagonal, over a confidence histogram.

    Top panel: `draw_reliability`; the title ends with the ECE. Bottom panel: samples per bin (all
    n_bins bars). Built on matplotlib.figure.Figure, so no pyplot state and no display are needed.
    """
    bins = reliability_bins(probs, labels, n_bins)
    figure = Figure(figsize=(5, 6.5), layout="constrained")
    axes, histogram = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    draw_reliability(axes, bins)
    axes.set_title(f"{title}\nECE = {bins.ece:.4f}" if title else f"ECE = {bins.ece:.4f}")

    histogram.bar((bins.edges[:-1] + bins.edges[1:]) / 2, bins.counts, np.diff(bins.edges), color="tab:gray",
                  edgecolor="black")
    histogram.set(xlabel="Confidence", ylabel="Count")
    return figure


# --------------------------------------------------------------------------- predictions on disk


class Predictions(NamedTuple):
    logits: np.ndarray  # float32
    labels: np.ndarray  # int32
    head: str


def save_predictions(path: str | os.PathLike[str], logits: np.ndarray, labels: np.ndarray, head: str) -> Path:
    """Writes a compressed .npz (float32 logits, int32 labels, head); returns the path written.

    ".npz" is appended when the name lacks it (as numpy does).
    """
    checked = _check_logits(logits, head)
    labels = _check_labels(labels, len(checked), _n_classes(checked, head))
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    np.savez_compressed(
        path, logits=np.asarray(logits, dtype=np.float32), labels=labels.astype(np.int32), head=np.str_(head)
    )
    return path


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
    """(logits, labels, head) as written by `save_predictions`."""
    with np.load(path, allow_pickle=False) as data:
        return Predictions(data["logits"], data["labels"], str(data["head"]))


# --------------------------------------------------------------------------- Keras callback


class CalibrationCallback(keras.callbacks.Callback):
    """Adds validation calibration metrics to the epoch logs, for the callbacks that follow it.

    At each epoch end: validation logits from `logits_model` (default: the trained model), then
    `calibration_metrics` of `probabilities(logits, head)` written into `logs` as "val/ece",
    "val/mce", "val/adaece", "val/classwise_ece", "val/brier", "val/nll", then each `extra(logits,
    labels)` dict under a "val/" prefix, and the callback's own cost as "perf/calibration_seconds"
    (so its share of the epoch is measured inside the same epoch). `last_logits` keeps the latest logits.

    The logits come from `predict_on_batch` over slices of `batch_size` samples: the same compiled
    predict function as `predict`, without its per-call dataset and progress set-up. Measured on
    2 CPU cores, 5000 MNIST images through a 784-256-128-10 MLP: predict 0.12 s, this 0.04 s, the
    metrics 0.006 s, against a 3-5 s training epoch.
    """

    def __init__(
        self,
        x_val: Any,
        y_val: np.ndarray,
        head: str,
        logits_model: keras.Model | None = None,
        n_bins: int = 15,
        batch_size: int = 1024,
        extra: Sequence[Callable[[np.ndarray, np.ndarray], dict[str, float]]] = (),
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
        _check_n_bins(n_bins)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(keras.tree.flatten(x_val)[0])
        self.x_val = x_val
        self.y_val = _check_labels(y_val, n, None)
        self.head = head
        self.logits_model = logits_model
        self.n_bins = n_bins
        self.batch_size = batch_size
        self.extra = tuple(extra)
        self.last_logits: np.ndarray | None = None

    def _validation_logits(self) -> np.ndarray:
        model = self.model if self.logits_model is None else self.logits_model
        batches = [
            model.predict_on_batch(keras.tree.map_structure(lambda a: a[start : start + self.batch_size], self.x_val))
            for start in range(0, len(self.y_val), self.batch_size)
        ]
        return np.concatenate(batches)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        logits = self._validation_logits()
        self.last_logits = logits
        if logs is None:
            return
        metrics = calibration_metrics(probabilities(logits, self.head), self.y_val, self.n_bins)
        logs.update({f"val/{key}": value for key, value in metrics.items() if key != "accuracy"})
        for function in self.extra:
            logs.update({f"val/{key}": float(value) for key, value in function(logits, self.y_val).items()})
        logs["perf/calibration_seconds"] = time.perf_counter() - started

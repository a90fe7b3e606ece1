"""Recalibration methods: maps fitted on validation logits, applied to test logits.

Each has a scikit-learn-like interface, `fit(logits, labels) -> self` and `predict_proba(logits) -> P (n, k)`,
takes the logits of its head (`xent_lab.heads`) and is registered by name in `RECALIBRATORS`:

- temperature (Guo et al. 2017): P = head(z / T). Objective "nll": T minimising the validation NLL
  (`fit_temperature`); "ece" (Mukhoti et al., NeurIPS 2020): T on a grid 0.05, 0.10, ..., 10 minimising the
  validation ECE. Keeps the argmax.
- vector (Guo et al. 2017): softmax(diag(w) z + b).
- matrix (Guo et al. 2017) with ODIR (Kull et al., NeurIPS 2019, "Beyond temperature scaling"):
  softmax(W z + b) minimising NLL + λ/(k(k-1)) sum_{i≠j} W_ij² + μ/k sum_j b_j² (off-diagonal and
  intercept regularisation).
- dirichlet (Kull et al. 2019): softmax(W ln P + b), P the head's probabilities, with the same ODIR.
- isotonic (Zadrozny & Elkan 2002): one non-decreasing map per class of P_ij against 1[y = j] (pool adjacent
  violators, scikit-learn's IsotonicRegression), then rows renormalised.
- histogram (Zadrozny & Elkan 2001): per class, P_ij replaced by the validation frequency of class j in its
  equal-width bin (the bin's centre when the bin is empty), then rows renormalised.
- platt (Platt 1999), single sigmoid head: p = σ(a z + c), fitted on Platt's targets (N+ + 1)/(N+ + 2) and
  1/(N- + 2).
- beta (Kull, Silva Filho & Flach, AISTATS 2017), single sigmoid head: logit p = a ln s - b ln(1 - s) + c,
  s = σ(z), a, b >= 0 (the bound-constrained maximum likelihood).

After a one-vs-rest method a row whose classes all map to 0 becomes uniform. For a single sigmoid head the
one-vs-rest methods map the positive class only. The affine maps start at the identity (W = I, b = 0) and are
fitted by L-BFGS on the mean NLL with its analytic gradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression

from xent_lab import heads
from xent_lab.calibration.metrics import ece
from xent_lab.calibration.temperature import fit_temperature
from xent_lab.calibration.validation import check_labels, check_n_bins
from xent_lab.heads import HEADS, Head

MIN_FIT_SAMPLES = 20  # fewer validation samples than this cannot fit even one temperature meaningfully
ECE_TEMPERATURE_GRID = np.round(np.arange(1, 201) * 0.05, 2)  # 0.05 ... 10 (Mukhoti et al. 2020)
MULTICLASS = (Head.SOFTMAX, Head.SIGMOID_OVR)


class Recalibrator(ABC):
    """fit(logits, labels) -> self on validation; predict_proba(logits) -> P (n, k); params: JSON-ready values."""

    name: ClassVar[str]
    heads: ClassVar[tuple[Head, ...]]
    changes_argmax: ClassVar[bool] = True

    def __init__(self, head: str) -> None:
        self.head = heads.check_head(head)
        if self.head not in self.heads:
            raise ValueError(
                f"recalibration method {self.name!r} does not apply to a {self.head.value!r} head; methods for "
                f"{self.head.value}: {', '.join(methods_for(self.head))}"
            )
        self.n_classes: int | None = None

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> Self:
        logits = heads.check_logits(logits, self.head)
        if len(logits) < MIN_FIT_SAMPLES:
            raise ValueError(
                f"{self.name} needs at least {MIN_FIT_SAMPLES} validation samples to fit, got {len(logits)}"
            )
        self.n_classes = heads.num_classes(logits, self.head)
        self._fit(logits, check_labels(labels, len(logits), self.n_classes))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        if self.n_classes is None:
            raise RuntimeError(f"{self.name}: call fit(logits, labels) before predict_proba")
        logits = heads.check_logits(logits, self.head)
        if heads.num_classes(logits, self.head) != self.n_classes:
            raise ValueError(f"{self.name} was fitted on {self.n_classes} classes, got logits of shape {logits.shape}")
        return self._predict(logits)

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The fitted parameters as JSON-ready values."""

    @abstractmethod
    def _fit(self, logits: np.ndarray, labels: np.ndarray) -> None: ...

    @abstractmethod
    def _predict(self, logits: np.ndarray) -> np.ndarray: ...


class TemperatureScaling(Recalibrator):
    name = "temperature"
    heads = HEADS
    changes_argmax = False

    def __init__(self, head: str, objective: str = "nll", n_bins: int = 15) -> None:
        super().__init__(head)
        if objective not in ("nll", "ece"):
            raise ValueError(f"temperature objective must be 'nll' or 'ece', got {objective!r}")
        check_n_bins(n_bins)
        self.objective, self.n_bins = objective, n_bins
        self.temperature = 1.0

    def _fit(self, logits: np.ndarray, labels: np.ndarray) -> None:
        if self.objective == "nll":
            self.temperature = fit_temperature(logits, labels, self.head)
            return
        errors = [ece(heads.probabilities(logits / t, self.head), labels, self.n_bins) for t in ECE_TEMPERATURE_GRID]
        self.temperature = float(ECE_TEMPERATURE_GRID[int(np.argmin(errors))])

    def _predict(self, logits: np.ndarray) -> np.ndarray:
        return heads.probabilities(logits / self.temperature, self.head)

    @property
    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "objective": self.objective}


class _AffineScaling(Recalibrator):
    """softmax(W x + b), x the logits or the log-probabilities; W diagonal or full with ODIR."""

    heads = MULTICLASS
    diagonal: ClassVar[bool] = False
    on_log_probabilities: ClassVar[bool] = False

    def __init__(self, head: str, reg_lambda: float = 1e-2, reg_mu: float = 1e-2) -> None:
        super().__init__(head)
        if reg_lambda < 0 or reg_mu < 0:
            raise ValueError(f"ODIR weights must be >= 0, got lambda={reg_lambda!r}, mu={reg_mu!r}")
        self.reg_lambda, self.reg_mu = reg_lambda, reg_mu
        self.weights = np.empty((0, 0))
        self.bias = np.empty(0)

    def _inputs(self, logits: np.ndarray) -> np.ndarray:
        return heads.log_probabilities(logits, self.head) if self.on_log_probabilities else logits

    def _unpack(self, theta: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        weights = np.diag(theta[:k]) if self.diagonal else theta[: k * k].reshape(k, k)
        return weights, theta[-k:]

    def _fit(self, logits: np.ndarray, labels: np.ndarray) -> None:
        x = self._inputs(logits)
        n, k = x.shape
        onehot = np.eye(k)[labels]
        off_diagonal = 1.0 - np.eye(k)
        # The vector map has no off-diagonal entries and, as in Guo et al., no penalty.
        lam = 0.0 if self.diagonal else self.reg_lambda / (k * (k - 1))
        mu = 0.0 if self.diagonal else self.reg_mu / k
        # Optimised in (W, s) with W x + b = W (x - x̄) + s: the same objective, but log-probabilities (all far
        # below 0) no longer make W and b nearly collinear; L-BFGS then needs ~5x fewer steps for Dirichlet.
        mean = x.mean(axis=0)
        centred = x - mean

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            weights, shift = self._unpack(theta, k)
            bias = shift - weights @ mean
            log_p = special.log_softmax(centred @ weights.T + shift, axis=1)
            loss = -np.sum(onehot * log_p) / n + lam * np.sum((weights * off_diagonal) ** 2) + mu * bias @ bias
            residual = (np.exp(log_p) - onehot) / n
            grad_w = residual.T @ centred + 2 * lam * weights * off_diagonal - 2 * mu * np.outer(bias, mean)
            grad_w = np.diag(grad_w) if self.diagonal else grad_w.ravel()
            return loss, np.concatenate([grad_w, residual.sum(axis=0) + 2 * mu * bias])

        start = np.concatenate([np.ones(k) if self.diagonal else np.eye(k).ravel(), mean])
        result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
        if not np.all(np.isfinite(result.x)):
            raise RuntimeError(f"{self.name} fit did not converge: {result.message}")
        self.weights, shift = self._unpack(result.x, k)
        self.bias = shift - self.weights @ mean

    def _predict(self, logits: np.ndarray) -> np.ndarray:
        return special.softmax(self._inputs(logits) @ self.weights.T + self.bias, axis=1)

    @property
    def params(self) -> dict[str, Any]:
        weights = np.diag(self.weights) if self.diagonal else self.weights
        return {"weights": weights.tolist(), "bias": self.bias.tolist()}


class VectorScaling(_AffineScaling):
    name = "vector"
    diagonal = True


class MatrixScaling(_AffineScaling):
    name = "matrix"

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "odir_lambda": self.reg_lambda, "odir_mu": self.reg_mu}


class DirichletCalibration(MatrixScaling):
    name = "dirichlet"
    on_log_probabilities = True


class _OneVsRest(Recalibrator):
    """A non-decreasing map per class of P_ij (the positive class only for one sigmoid), then renormalised."""

    heads = HEADS

    def __init__(self, head: str) -> None:
        super().__init__(head)
        self.maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # class -> (x knots, y values)

    def _columns(self, n_classes: int) -> range:
        return range(1, 2) if self.head == Head.SIGMOID else range(n_classes)

    def _fit(self, logits: np.ndarray, labels: np.ndarray) -> None:
        probs = heads.probabilities(logits, self.head)
        self.maps = {
            j: self._fit_column(probs[:, j], (labels == j).astype(np.float64)) for j in self._columns(probs.shape[1])
        }

    def _predict(self, logits: np.ndarray) -> np.ndarray:
        probs = heads.probabilities(logits, self.head)
        for j, (knots, values) in self.maps.items():
            probs[:, j] = self._apply(probs[:, j], knots, values)
        if self.head == Head.SIGMOID:
            probs[:, 0] = 1.0 - probs[:, 1]
            return probs
        totals = probs.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, probs / totals, 1.0 / probs.shape[1])

    @abstractmethod
    def _fit_column(self, scores: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    @staticmethod
    @abstractmethod
    def _apply(scores: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray: ...

    @property
    def params(self) -> dict[str, Any]:
        return {str(j): {"knots": k.tolist(), "values": v.tolist()} for j, (k, v) in self.maps.items()}


class IsotonicCalibration(_OneVsRest):
    name = "isotonic"

    def _fit_column(self, scores: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, outcomes)
        return fitted.X_thresholds_, fitted.y_thresholds_

    @staticmethod
    def _apply(scores: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
        # IsotonicRegression.predict: linear between the knots, clipped to the end values outside them.
        return np.interp(scores, knots, values)


class HistogramBinning(_OneVsRest):
    name = "histogram"

    def __init__(self, head: str, n_bins: int = 15) -> None:
        super().__init__(head)
        check_n_bins(n_bins)
        self.n_bins = n_bins

    def _fit_column(self, scores: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        bins = self._bins(scores, edges)
        counts = np.bincount(bins, minlength=self.n_bins)
        hits = np.bincount(bins, outcomes, minlength=self.n_bins)
        centres = (edges[:-1] + edges[1:]) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return edges, np.where(counts > 0, hits / counts, centres)

    @staticmethod
    def _bins(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
        return np.searchsorted(edges[1:-1], scores, side="left")  # (lo, hi] as in `ece`

    @staticmethod
    def _apply(scores: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
        return values[HistogramBinning._bins(scores, knots)]


class _BinaryLogistic(Recalibrator):
    """p = σ(features(z) · θ + c) for one sigmoid logit z, by bound-constrained maximum likelihood."""

    heads = (Head.SIGMOID,)
    names: ClassVar[tuple[str, ...]]
    bounds: ClassVar[tuple[tuple[float | None, float | None], ...]]
    platt_targets: ClassVar[bool] = False

    def __init__(self, head: str) -> None:
        super().__init__(head)
        self.theta = np.empty(0)

    @staticmethod
    @abstractmethod
    def _features(logits: np.ndarray) -> np.ndarray: ...

    def _fit(self, logits: np.ndarray, labels: np.ndarray) -> None:
        features = np.column_stack([self._features(logits), np.ones(len(logits))])
        targets = labels.astype(np.float64)
        if self.platt_targets:
            positives = targets.sum()
            targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (len(labels) - positives + 2))

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            scores = features @ theta
            loss = np.mean(np.logaddexp(0.0, scores) - targets * scores)
            return float(loss), features.T @ (special.expit(scores) - targets) / len(scores)

        start = np.array([1.0] * (features.shape[1] - 1) + [0.0])
        result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[*self.bounds, (None, None)])
        self.theta = result.x

    def _predict(self, logits: np.ndarray) -> np.ndarray:
        return heads.binary_pair(special.expit(self._features(logits) @ self.theta[:-1] + self.theta[-1]))

    @property
    def params(self) -> dict[str, Any]:
        return dict(zip([*self.names, "c"], self.theta.tolist()))


class PlattScaling(_BinaryLogistic):
    name = "platt"
    names = ("a",)
    bounds = ((None, None),)
    platt_targets = True

    @staticmethod
    def _features(logits: np.ndarray) -> np.ndarray:
        return logits[:, None]


class BetaCalibration(_BinaryLogistic):
    name = "beta"
    names = ("a", "b")
    bounds = ((0.0, None), (0.0, None))

    @staticmethod
    def _features(logits: np.ndarray) -> np.ndarray:
        # [ln s, -ln(1 - s)] from the logit, without rounding s to 0 or 1 first.
        return np.column_stack([special.log_expit(logits), -special.log_expit(-logits)])


RECALIBRATORS: dict[str, type[Recalibrator]] = {
    cls.name: cls
    for cls in (
        TemperatureScaling,
        VectorScaling,
        MatrixScaling,
        DirichletCalibration,
        IsotonicCalibration,
        HistogramBinning,
        PlattScaling,
        BetaCalibration,
    )
}


# `calibration.methods: all`: every method that applies to the head, so that one study can cover losses of
# different heads (a single sigmoid takes Platt and beta, a softmax vector, matrix and Dirichlet scaling).
ALL_METHODS = "all"


def methods_for(head: str) -> tuple[str, ...]:
    """The names of RECALIBRATORS that apply to `head`."""
    head = heads.check_head(head)
    return tuple(name for name, cls in RECALIBRATORS.items() if head in cls.heads)


def resolve_methods(methods: str | Sequence[str], head: str) -> list[str]:
    """`methods` as a list: the configured names, or for `ALL_METHODS` every method that applies to `head`."""
    return list(methods_for(head)) if methods == ALL_METHODS else list(methods)


def recalibrator(name: str, head: str, **options: Any) -> Recalibrator:
    """An unfitted RECALIBRATORS[name] for `head`; ValueError naming the choices for an unknown name or head."""
    if name not in RECALIBRATORS:
        raise ValueError(f"unknown recalibration method {name!r}; expected one of {', '.join(RECALIBRATORS)}")
    return RECALIBRATORS[name](head, **options)

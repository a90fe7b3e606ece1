"""AdaFocal (Ghosh, Schaaf & Gormley, NeurIPS 2022, "AdaFocal: Calibration-aware Adaptive Focal Loss"): a focal
loss with one gamma per confidence bin, updated after each epoch from the validation set's calibration gap in that
bin, switching to the inverse-focal loss where a bin is under-confident: `adafocal_crossentropy`,
`AdaFocalCrossentropy`, and the update, `adafocal_bins` and `adafocal_gamma_update`.

The authors' code is github.com/3mcloud/adafocal, commit f2c6ca06d2967e3d5fcaecc53222ef16a08abd48:
losses/adafocal.py (the loss and `update_bin_stats`), utils/metrics.py (`adaECE_error_mukhoti`, the bins) and
main.py (the defaults). The harness calls `after_epoch` with the validation predictions after each epoch
(`xent_lab.training.callbacks.AfterEpoch`, for any loss that has the method) and logs what it returns.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from xent_lab.losses._ops import Tensor, categorical_log1m_probs, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses.
from xent_lab.losses.functional import _categorical

WHO = "AdaFocalCrossentropy"


def gamma_metric(bin_index: int) -> str:
    """`3` -> `adafocal/gamma/3`: the gamma of bin 3 after an epoch's update, logged per epoch."""
    return f"adafocal/gamma/{bin_index}"


def uniform_edges(n_bins: int) -> np.ndarray:
    """The inner edges of `n_bins` equal-width bins of [0, 1]: the bins before the first update, as theirs."""
    return np.linspace(0.0, 1.0, n_bins + 1)[1:-1]


def adafocal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    gammas: Tensor,
    edges: Tensor,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """AdaFocal loss between one-hot (or soft) labels and predicted distributions (Ghosh et al., 2022).

    `gammas` holds one gamma per bin (B values) and `edges` the B - 1 inner boundaries of the bins, ascending:
    a probability p falls in bin b = #{edges <= p} (so below edges[0] in bin 0, at or above edges[-1] in
    bin B - 1). With p, y_s as in `categorical_crossentropy` and g the gamma of the bin of each class's p:

    `loss = -sum_over_axis(y_s * (1 - sign(g) * p) ** |g| * log(p))`

    For a one-hot label that is their loss on p_t, the label's probability: the focal loss
    `-(1 - p_t) ** g * log(p_t)` where g > 0 and the inverse-focal loss `-(1 + p_t) ** |g| * log(p_t)`,
    which pushes confident samples further, where g < 0. With soft targets every class term gets the gamma
    of its own probability's bin, as `categorical_focal_crossentropy` gives every term its own factor.

    The gammas and edges are constants for the gradient (the loss's state, written by the update between
    epochs). The factor is exp(|g| * log(1 -+ p)), with log(1 - p) computed without cancellation from the
    logits, so loss and gradient stay finite at logits of +-1e4 for any gamma; their code adds 1e-20 to
    1 - p instead, which changes the factor only where 1 - p < 1e-20, where -log(p) < 1e-20 anyway.
    Probabilities are clipped and renormalized as in `categorical_crossentropy`.
    """
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, WHO)
    p = ops.exp(c.log_p)
    edges = ops.stop_gradient(ops.cast(edges, p.dtype))
    gammas = ops.stop_gradient(ops.cast(gammas, p.dtype))
    bins = ops.sum(ops.cast(ops.expand_dims(p, -1) >= edges, "int32"), axis=-1)
    gamma = ops.take(gammas, bins)
    log_1m_p = categorical_log1m_probs(c.inputs.y_pred, c.inputs.from_logits, c.axis, c.log_p)
    # log1p(p) only where it is used, so that the other branch's value never enters the gradient.
    log_base = ops.where(gamma >= 0, log_1m_p, ops.log1p(ops.where(gamma >= 0, 0.0, p)))
    factor = ops.exp(ops.abs(gamma) * log_base)
    return finish(ops.sum(factor * c.terms, axis=c.axis), c.inputs, c.axis)


def adafocal_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges, gaps) of `n_bins` equal-mass bins of the validation `confidence` (arg-max probability per sample),
    `correct` whether each arg-max is the label, as their `adaECE_error_mukhoti`:

    the edges (n_bins + 1) interpolate the sorted confidences at ranks `linspace(0, n, n_bins + 1)`; bin b holds
    the confidences in (edges[b], edges[b + 1]] (so the smallest confidence is in none); its gap is its mean
    confidence minus its accuracy, 0 for an empty bin. A signed gap: positive where the bin is over-confident.
    Not `xent_lab.calibration`'s equal-mass bins, which place ties by rank and have no edges to bin by.
    """
    confidence = np.asarray(confidence, "float64")
    correct = np.asarray(correct, "float64")
    n = len(confidence)
    edges = np.interp(np.linspace(0, n, n_bins + 1), np.arange(n), np.sort(confidence))
    gaps = np.zeros(n_bins)
    for b in range(n_bins):
        inside = (confidence > edges[b]) & (confidence <= edges[b + 1])
        if inside.any():
            gaps[b] = confidence[inside].mean() - correct[inside].mean()
    return edges, gaps


def adafocal_gamma_update(
    gammas: np.ndarray,
    gaps: np.ndarray,
    lam: float = 1.0,
    switch: float = 0.2,
    gamma_min: float = -2.0,
    gamma_max: float = 20.0,
) -> np.ndarray:
    """The next gamma of each bin from its gamma and its validation calibration gap (`adafocal_bins`), as their
    `update_bin_stats`:

    `g' = g * exp(lam * gap)` where g > 0, `g' = g * exp(-lam * gap)` otherwise: an over-confident bin
    (gap > 0) focuses more, an under-confident one less, and for an inverse-focal bin (g < 0) the other way.
    Where |g'| < `switch` the bin switches sides: to -switch from g' > 0 (inverse focal), else to +switch.
    Then g' is clipped to [gamma_min, gamma_max].
    """
    gammas = np.asarray(gammas, "float64")
    gaps = np.asarray(gaps, "float64")
    following = np.where(gammas > 0, gammas * np.exp(lam * gaps), gammas * np.exp(-lam * gaps))
    following = np.where(np.abs(following) < switch, np.where(following > 0, -switch, switch), following)
    return np.clip(following, gamma_min, gamma_max)


def check_settings(n_bins: int, lam: float, switch: float, gamma_min: float, gamma_max: float) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1. Received: n_bins={n_bins!r}")
    if not lam >= 0:
        raise ValueError(f"lam must be a number >= 0. Received: lam={lam!r}")
    if not switch >= 0:
        raise ValueError(f"switch must be a number >= 0. Received: switch={switch!r}")
    if not gamma_min <= -switch <= switch <= gamma_max:
        raise ValueError(
            "gamma_min <= -switch <= switch <= gamma_max must hold. "
            f"Received: gamma_min={gamma_min!r}, switch={switch!r}, gamma_max={gamma_max!r}"
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class AdaFocalCrossentropy(_LossFunctionWrapper):
    """Computes the AdaFocal loss `adafocal_crossentropy` (Ghosh et al., 2022) with its per-bin gammas and bin
    edges held as non-trainable `keras.Variable`s (`gammas`, `edges`), which `update` rewrites from the
    validation predictions after each epoch. The config holds the settings, not that state: a loss restored from
    its config starts again from `gamma_initial` and equal-width bins.

    Args:
        n_bins: Number of confidence bins. Defaults to `15`.
        gamma_initial: Every bin's gamma before the first update. Defaults to `1.0`.
        lam: Step of the update, their lambda. Defaults to `1.0`.
        switch: |gamma| below which a bin switches between focal and inverse focal. Defaults to `0.2`.
        gamma_min: Lower bound of the gammas (inverse focal with |gamma| <= -gamma_min). Defaults to `-2.0`.
        gamma_max: Upper bound of the gammas. Defaults to `20.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"adafocal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.

    The defaults are those of the authors' main.py.
    """

    n_bins: int
    gamma_initial: float
    lam: float
    switch: float
    gamma_min: float
    gamma_max: float

    def __init__(
        self,
        n_bins: int = 15,
        gamma_initial: float = 1.0,
        lam: float = 1.0,
        switch: float = 0.2,
        gamma_min: float = -2.0,
        gamma_max: float = 20.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "adafocal_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_settings(n_bins, lam, switch, gamma_min, gamma_max)
        super().__init__(
            adafocal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            n_bins=int(n_bins),
            gamma_initial=float(gamma_initial),
            lam=float(lam),
            switch=float(switch),
            gamma_min=float(gamma_min),
            gamma_max=float(gamma_max),
        )
        self.gammas = keras.Variable(np.full(n_bins, gamma_initial), dtype="float32", trainable=False, name="gammas")
        self.edges = keras.Variable(uniform_edges(n_bins), dtype="float32", trainable=False, name="edges")

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self.fn(
            y_true,
            y_pred,
            self.gammas,
            self.edges,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            axis=self.axis,
        )

    def update(self, confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
        """One update from the validation set: the bins of `confidence` (arg-max probability per sample) and
        `correct` (whether each arg-max is the label) become the loss's bins, each bin's gamma follows its gap
        (`adafocal_bins`, `adafocal_gamma_update`). Returns the new gammas."""
        edges, gaps = adafocal_bins(confidence, correct, self.n_bins)
        gammas = adafocal_gamma_update(self.gammas.numpy(), gaps, self.lam, self.switch, self.gamma_min, self.gamma_max)
        self.gammas.assign(gammas.astype("float32"))
        self.edges.assign(edges[1:-1].astype("float32"))
        return gammas

    def after_epoch(self, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """The harness's per-epoch hook: `update` from the validation set's class `probabilities` (n, k) and
        integer `labels`; returns each bin's new gamma as the epoch value `adafocal/gamma/BIN`."""
        gammas = self.update(probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels)
        return {gamma_metric(b): float(gamma) for b, gamma in enumerate(gammas)}

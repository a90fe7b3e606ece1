"""Information-theory helpers on NumPy arrays (float64, natural logarithms: nats), no Keras.

`entropy`, `cross_entropy`, `kl_divergence` of distributions, the targets the losses train towards
(`smoothed_targets`), and the split of the cross-entropy into target entropy and KL divergence
(`loss_decomposition`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from xent_lab.heads import binary_pair, smooth_labels
from xent_lab.losses._checks import check_label_smoothing


def entropy(p: Any, axis: int = -1) -> np.ndarray:
    """H(p) = -sum p log p along `axis` (0 log 0 = 0): one value per distribution."""
    p = np.asarray(p, dtype=np.float64)
    return -np.sum(special.xlogy(p, p), axis=axis)


def cross_entropy(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """H(p, q) = -sum p log q along `axis` (0 log q = 0; inf where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return -np.sum(special.xlogy(p, q), axis=axis)


def kl_divergence(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """KL(p || q) = sum p log(p / q) along `axis` (0 log 0 = 0; inf where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return np.sum(special.rel_entr(p, q), axis=axis)


def smoothed_targets(labels: Any, num_classes: int, label_smoothing: float = 0.0) -> np.ndarray:
    """Integer labels (n,) -> the (n, num_classes) targets the categorical losses train towards.

    `one_hot * (1 - label_smoothing) + label_smoothing / num_classes`. For a binary model with one
    sigmoid output use num_classes=2: column 1 is then the binary losses' smoothed label
    `y * (1 - label_smoothing) + 0.5 * label_smoothing`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array. Received {labels.dtype} of shape {labels.shape}")
    if labels.size and not (labels.min() >= 0 and labels.max() < num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}). Received [{labels.min()}, {labels.max()}]")
    check_label_smoothing(label_smoothing)
    return smooth_labels(np.eye(num_classes)[labels], label_smoothing, num_classes)


def _as_distributions(x: Any) -> np.ndarray:
    """(n, k) distributions as they are; (n,) or (n, 1) probabilities of class 1 -> (n, 2)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1 or x.shape[-1] == 1:
        return binary_pair(x.reshape(-1))
    return x


def loss_decomposition(targets: Any, probs: Any, epsilon: float = 1e-7) -> dict[str, float]:
    """Means over samples of H(p, q) = H(p) + KL(p || q), with p = targets and q = probs.

    Args:
        targets: (n, k) target distributions (e.g. `smoothed_targets(...)`), or for a binary model
            with one sigmoid output (n,) / (n, 1) target probabilities of class 1.
        probs: Predicted distributions, shaped like `targets` ((n,) / (n, 1): sigmoid outputs).
        epsilon: Predicted probabilities are raised to at least `epsilon` and renormalized, so that a
            probability that underflowed to 0 gives a large finite cross-entropy rather than inf
            (the losses clip at the same epsilon). 0 gives the exact values.

    Returns:
        `{"cross_entropy": mean H(p, q), "target_entropy": mean H(p), "kl": mean KL(p || q)}` in
        nats; with label smoothing `target_entropy` > 0 is the part of the loss no model can remove.
    """
    p, q = _as_distributions(targets), _as_distributions(probs)
    if p.shape != q.shape:
        raise ValueError(f"targets and probs must have the same shape. Received {p.shape} and {q.shape}")
    if epsilon:
        q = np.maximum(q, epsilon)
        q = q / q.sum(axis=-1, keepdims=True)
    return {
        "cross_entropy": float(np.mean(cross_entropy(p, q))),
        "target_entropy": float(np.mean(entropy(p))),
        "kl": float(np.mean(kl_divergence(p, q))),
    }

"""A loss choice for a task -> the head the model needs, the labels' encoding and a Keras loss object.

All of it comes from the loss's entry in `xent_lab.losses.registry` (the README's "A loss fixes the model's
head" table is generated from it): `impl=builtin` is Keras' class, `impl=custom` ours, `impl=naive` the
textbook form; all take the same constructor arguments (naive adds `epsilon`), so the comparison is like
for like.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import special

from xent_lab.heads import Head, binary_pair, smooth_labels
from xent_lab.losses.registry import BINARY, LOSSES, SPARSE, constructor_args


@dataclass(frozen=True)
class Objective:
    """What a loss choice asks of the model and the labels."""

    head: Head
    units: int  # width of the logits layer
    label_format: str  # SPARSE | ONEHOT | BINARY
    from_logits: bool
    label_smoothing: float
    loss: keras.losses.Loss

    @property
    def activation(self) -> str:
        return "softmax" if self.head == Head.SOFTMAX else "sigmoid"

    def encode_labels(self, labels: np.ndarray) -> np.ndarray:
        """Integer class labels (n,) -> the targets this loss expects."""
        if self.label_format == SPARSE:
            return labels.astype("int32")
        if self.label_format == BINARY:
            return labels.astype("float32").reshape(-1, 1)
        return np.eye(self.units, dtype="float32")[labels]

    def distributions(self, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(target, predicted) distributions along the last axis, as this loss compares them.

        Softmax heads: the smoothed one-hot targets against softmax(logits). Sigmoid heads: one
        Bernoulli pair [1 - p, p] per output, with binary smoothing y(1 - ls) + ls/2, so that the
        mean cross-entropy equals Keras' binary cross-entropy (a mean over outputs).
        """
        logits = np.asarray(logits, dtype="float64").reshape(len(labels), self.units)
        ls = self.label_smoothing
        if self.head == Head.SOFTMAX:
            return smooth_labels(np.eye(self.units)[labels], ls, self.units), special.softmax(logits, axis=-1)
        onehot = labels.reshape(-1, 1).astype("float64") if self.head == Head.SIGMOID else np.eye(self.units)[labels]
        return binary_pair(smooth_labels(onehot, ls, 2)), binary_pair(special.expit(logits))

    def metrics(self) -> list[keras.metrics.Metric]:
        """The accuracy, then the loss's own terms where it names them (`term_metrics`, e.g. MMCE's CE and MMCE)."""
        terms = getattr(self.loss, "term_metrics", None)
        return [self.accuracy_metric(), *(terms() if terms is not None else [])]

    def accuracy_metric(self) -> keras.metrics.Metric:
        if self.head == Head.SIGMOID:
            # Logits are thresholded at 0, probabilities at 0.5: the same decision.
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if self.from_logits else 0.5)
        if self.label_format == SPARSE:
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # argmax accuracy: for one-vs-rest sigmoids the argmax of the logits is the predicted class.
        return keras.metrics.CategoricalAccuracy(name="accuracy")


def build_objective(loss_cfg: DictConfig, num_classes: int) -> Objective:
    """The head, label format and Keras loss object for `loss_cfg` on a task with `num_classes` classes."""
    cfg = OmegaConf.to_container(loss_cfg, resolve=True)
    loss = LOSSES.get(cfg["name"])
    if loss is None:
        raise ValueError(f"unknown loss {cfg['name']!r}")
    form = loss.form(num_classes)
    loss_class = form.loss_class(cfg["impl"])
    if loss_class is None:  # the config check says so first, as "not applicable"
        raise ValueError(f"loss {loss.name!r} has no impl {cfg['impl']!r} (only {', '.join(loss.impls)})")
    return Objective(
        head=form.head,
        units=form.units(num_classes),
        label_format=form.labels,
        from_logits=cfg["from_logits"],
        label_smoothing=cfg["label_smoothing"],
        loss=loss_class(**constructor_args(loss, form, cfg)),
    )

"""The zero-gradient probe: how many training samples the loss has stopped correcting.

On the probability path the built-in and custom losses clip the probabilities to [epsilon, 1 - epsilon];
a sample whose true-class probability fell below epsilon (a confident mistake) or rose above 1 - epsilon
then gets an exactly zero gradient: the clip cuts it. From logits the gradient is softmax(z) - y, never
all zero on a mistake; the textbook loss (`impl=naive`) gives -1 / (p + epsilon), large but not zero.

`loss_gradients` takes the per-sample loss of a Keras loss (`Loss.call`: no reduction) and its gradient
with respect to the loss's input, the model's output (logits or probabilities), with `tf.GradientTape`.
The losses probed treat samples independently, so the gradient of the summed loss with respect to
sample i's output is that sample's own gradient. `GradientProbe` does this at each epoch end on a fixed
subset of the training samples and writes the fractions into the epoch's logs.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import keras
import numpy as np

from xent_lab.tracking import tags as T


class GradientCounts(NamedTuple):
    """Fractions of the probed samples."""

    zero: float  # every component of the gradient exactly 0
    zero_wrong: float  # zero and misclassified: a confident mistake the loss no longer corrects
    nonfinite: float  # some component NaN or infinite


def loss_gradients(loss: keras.losses.Loss, y_true: Any, y_pred: Any) -> np.ndarray:
    """d loss_i / d y_pred_i for each sample i: the gradient of the per-sample losses' sum (samples independent)."""
    import tensorflow as tf

    y_pred = tf.convert_to_tensor(y_pred, dtype="float32")
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        per_sample = loss.call(tf.convert_to_tensor(y_true), y_pred)
        total = tf.reduce_sum(per_sample)
    return tape.gradient(total, y_pred).numpy()


def count_gradients(gradients: np.ndarray, wrong: np.ndarray) -> GradientCounts:
    """The fractions of `GradientCounts` from per-sample gradients (n, ...) and a misclassified mask (n,)."""
    flat = gradients.reshape(len(gradients), -1)
    zero = np.all(flat == 0, axis=1)
    return GradientCounts(
        float(zero.mean()), float((zero & wrong).mean()), float((~np.all(np.isfinite(flat), axis=1)).mean())
    )


def misclassified(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Whether each sample's prediction is wrong: argmax over classes, or a single sigmoid unit vs its threshold.

    The threshold is 0 on logits and 0.5 on probabilities; `outputs` of one column are read as logits when any
    value lies outside [0, 1]."""
    if outputs.shape[-1] > 1:
        return np.argmax(outputs, axis=-1) != labels
    threshold = 0.0 if np.any((outputs < 0) | (outputs > 1)) else 0.5
    return (outputs[:, 0] > threshold).astype(int) != labels


class GradientProbe(keras.callbacks.Callback):
    """At each epoch end: the per-sample loss gradients on `samples` fixed training samples, as fractions.

    Writes `train/zero_grad_fraction`, `train/zero_grad_wrong_fraction`, `train/nonfinite_grad_fraction` and
    its own cost `perf/probe_seconds` into the epoch's logs (for `EpochEvents`, placed after it). The
    subset is drawn once with `seed`. Nothing is written when the model's outputs are not finite: its weights
    diverged (trainer.on_nonfinite=record), and there is nothing left to probe.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        labels: np.ndarray,
        loss: keras.losses.Loss,
        samples: int,
        seed: int = 0,
        batch_size: int = 1024,
    ) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        chosen = np.sort(np.random.default_rng(seed).permutation(len(labels))[:samples])
        self.x, self.y, self.labels = x[chosen], y[chosen], np.asarray(labels)[chosen]
        self.loss = loss
        self.batch_size = batch_size

    def _outputs(self) -> np.ndarray:
        # The compiled predict function, as CalibrationCallback: no per-call dataset set-up.
        step = self.batch_size
        return np.concatenate(
            [self.model.predict_on_batch(self.x[start : start + step]) for start in range(0, len(self.x), step)]
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        outputs = self._outputs().astype("float32")
        if logs is None or not np.isfinite(outputs).all():
            return
        counts = count_gradients(loss_gradients(self.loss, self.y, outputs), misclassified(outputs, self.labels))
        logs.update(
            {
                T.ZERO_GRAD_FRACTION: counts.zero,
                T.ZERO_GRAD_WRONG_FRACTION: counts.zero_wrong,
                T.NONFINITE_GRAD_FRACTION: counts.nonfinite,
                T.PROBE_SECONDS: time.perf_counter() - started,
            }
        )

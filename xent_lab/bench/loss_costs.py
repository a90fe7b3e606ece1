"""What the losses beyond cross-entropy cost: a compiled forward+backward pass of each over
`CategoricalCrossentropy`'s on the same (batch, 10) logits, and the batch size up to which the
quadratic MMCE stays cheap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from xent_lab import losses
from xent_lab.bench.common import median_time, ratio_summary

NUM_CLASSES = 10
# MMCE builds a batch x batch kernel: 8192^2 float32 is 256 MiB, several copies with the backward pass.
MMCE_MAX_BATCH = 8192
BREAK_EVEN_GRID = tuple(2**i for i in range(5, 13))  # 32 .. 4096
BREAK_EVEN_LIMIT = 1.5


def _step(loss: keras.losses.Loss, y: Any, z: Any) -> Callable[[], list[np.ndarray]]:
    """A traced forward+backward pass of `loss` on logits `z`, returning NumPy values (so the time is the work's)."""
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    step()  # trace
    return lambda: [t.numpy() for t in step()]


def _batch(batch: int, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """(logits (batch, 10), the labels as integers and one-hot)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    logits = tf.constant(rng.normal(scale=3.0, size=(batch, NUM_CLASSES)).astype("float32"))
    labels = rng.integers(0, NUM_CLASSES, size=batch)
    onehot = np.eye(NUM_CLASSES, dtype="float32")[labels]
    return logits, {"sparse": tf.constant(labels.astype("int32")), "onehot": tf.constant(onehot)}


def _paired(steps: dict[str, Callable[[], Any]], repeat: int, rounds: int) -> list[dict[str, float]]:
    """`rounds` rounds of median times, every step of `steps` in turn within each round."""
    return [{name: median_time(step, repeat) for name, step in steps.items()} for _ in range(rounds)]


def loss_costs(batch: int, repeat: int, rounds: int = 3) -> dict[str, Any]:
    """Per new loss class: its compiled forward+backward time over `CategoricalCrossentropy`'s (ours), on the
    same (batch, 10) logits, alternated with it in this process; the median of the paired ratios.

    MMCECrossentropy is left out above MMCE_MAX_BATCH (its kernel would not fit): `mmce_break_even` has it.
    """
    logits, targets = _batch(batch)
    cases = {
        "SparseCategoricalFocalCrossentropy": (losses.SparseCategoricalFocalCrossentropy, "sparse"),
        "CategoricalPolyCrossentropy": (losses.CategoricalPolyCrossentropy, "onehot"),
        # One sigmoid per class against the one-hot labels, as a one-vs-rest head.
        "BinaryPolyCrossentropy": (losses.BinaryPolyCrossentropy, "onehot"),
        "CategoricalBrier": (losses.CategoricalBrier, "onehot"),
    }
    if batch <= MMCE_MAX_BATCH:
        cases["MMCECrossentropy"] = (losses.MMCECrossentropy, "onehot")
    reference = _step(losses.CategoricalCrossentropy(from_logits=True), targets["onehot"], logits)
    results: dict[str, Any] = {}
    for name, (cls, target) in cases.items():
        steps = {"loss": _step(cls(from_logits=True), targets[target], logits), "cce": reference}
        results[name] = ratio_summary(_paired(steps, repeat, rounds), "loss", "cce", "informative")
    return {"batch": [batch, NUM_CLASSES], "reference": "xent_lab CategoricalCrossentropy", "losses": results}


def mmce_break_even(
    batches: Sequence[int] = BREAK_EVEN_GRID, repeat: int = 10, rounds: int = 3, limit: float = BREAK_EVEN_LIMIT
) -> dict[str, Any]:
    """MMCECrossentropy over CategoricalCrossentropy (compiled forward+backward, paired as in `loss_costs`) at
    each batch size of the grid, and `break_even`: the largest batch up to which every ratio is under `limit`
    (None if the smallest already is not)."""
    ratios: dict[int, dict[str, Any]] = {}
    for batch in sorted(batches):
        logits, targets = _batch(batch)
        steps = {
            "mmce": _step(losses.MMCECrossentropy(from_logits=True), targets["onehot"], logits),
            "cce": _step(losses.CategoricalCrossentropy(from_logits=True), targets["onehot"], logits),
        }
        ratios[batch] = ratio_summary(_paired(steps, repeat, rounds), "mmce", "cce", f"informative (< {limit})")
    break_even = None
    for batch, summary in ratios.items():
        if summary["ratio"] >= limit:
            break
        break_even = batch
    return {"limit": limit, "break_even": break_even, "batches": {str(b): s for b, s in ratios.items()}}

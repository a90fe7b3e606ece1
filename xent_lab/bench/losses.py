"""Custom losses against the Keras built-ins: a training epoch, and a compiled forward and backward pass."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from xent_lab import losses
from xent_lab.bench.common import EpochTimer, compiled, config, median_time, ratio_summary, steady
from xent_lab.data import Dataset


def training_step_ratio(dataset: Dataset, epochs: int, rounds: int) -> dict[str, Any]:
    """Per loss: steady epoch time with `impl=custom` over `impl=builtin`, alternating the two."""
    results: dict[str, Any] = {}
    for name in ("bce", "cce", "sparse_cce", "focal"):
        measured = []
        for _ in range(rounds):
            timings = {}
            for impl in ("builtin", "custom"):
                cfg = config(f"loss={name}", f"loss.impl={impl}")
                keras.utils.set_random_seed(0)
                objective, model = compiled(cfg, dataset)
                timer = EpochTimer()
                model.fit(
                    dataset.x_train,
                    objective.encode_labels(dataset.y_train),
                    epochs=epochs,
                    batch_size=cfg.trainer.batch_size,
                    callbacks=[timer],
                    verbose=0,
                )
                timings[impl] = steady(timer.seconds)
            measured.append(timings)
        results[name] = ratio_summary(measured, "custom", "builtin", "<= 1.02")
    return results


def loss_forward_backward_ratio(batch: int, repeat: int) -> dict[str, Any]:
    """Per loss class: one compiled forward+backward pass on a (batch, 10) logits array, custom over builtin."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(scale=3.0, size=(batch, 10)).astype("float32"))
    labels = rng.integers(0, 10, size=batch)
    targets = {
        "sparse": tf.constant(labels.astype("int32")),
        "onehot": tf.constant(np.eye(10, dtype="float32")[labels]),
        "binary": tf.constant((labels[:, None] == np.arange(10)).astype("float32")),
    }
    cases = {
        "BinaryCrossentropy": "binary",
        "CategoricalCrossentropy": "onehot",
        "SparseCategoricalCrossentropy": "sparse",
        "BinaryFocalCrossentropy": "binary",
        "CategoricalFocalCrossentropy": "onehot",
    }
    results: dict[str, Any] = {}
    for class_name, target in cases.items():
        steps = {}
        for impl, module in (("builtin", keras.losses), ("custom", losses)):
            loss = getattr(module, class_name)(from_logits=True)

            @tf.function
            def step(y=targets[target], z=logits, loss=loss):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    value = loss(y, z)
                return value, tape.gradient(value, z)

            step()  # trace
            steps[impl] = step
        rounds = [
            {impl: median_time(lambda s=s: [t.numpy() for t in s()], repeat) for impl, s in steps.items()}
            for _ in range(3)
        ]
        results[class_name] = ratio_summary(rounds, "custom", "builtin", "informative (target for training <= 1.02)")
    return {"batch": [batch, 10], "losses": results}

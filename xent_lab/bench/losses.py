"""Custom losses against the Keras built-ins: training steps of two identical models, and a compiled
forward and backward pass of the loss alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from xent_lab import losses
from xent_lab.bench.common import alternating, compiled, config, noise_verdict, paired_summary
from xent_lab.data import Dataset

# The loss classes that have a Keras built-in of the same name, with the label format each takes.
BUILTIN_PAIRS = {
    "BinaryCrossentropy": "binary",
    "CategoricalCrossentropy": "onehot",
    "SparseCategoricalCrossentropy": "sparse",
    "BinaryFocalCrossentropy": "binary",
    "CategoricalFocalCrossentropy": "onehot",
}


# Blocks of each impl per round of the training-step figure, of `steps` steps each (30 in `make bench`). With 8
# blocks of 150 steps, two identical built-in models measured 0.87-0.97 in one run's rounds: a burst of load
# lasting a block or more hits one model's blocks more than the other's. 40 blocks of 30 measured 0.975-0.999.
BLOCKS_PER_ROUND = 40
WARM_UP_BLOCKS = 8


def training_step_ratio(
    dataset: Dataset, steps: int, rounds: int, blocks: int = BLOCKS_PER_ROUND, warm_up: int = WARM_UP_BLOCKS
) -> dict[str, Any]:
    """Per loss: seconds per block of `steps` `train_on_batch` steps with `impl=custom` over `impl=builtin`.

    Both models (same architecture and initial weights) live in this process and train on the same
    batches, block after block. Each round times `blocks` blocks of each in ABBA order (so neither
    always goes first) and pairs them (`paired_summary`); `warm_up` blocks of each run first untimed.
    The custom model is built first: in the two identical models of the control ("cce_builtin_twice", the
    built-in twice), the one built second measured up to 5% faster.
    """
    results: dict[str, Any] = {}
    cases = {name: (name, "custom") for name in ("bce", "cce", "sparse_cce", "focal")}
    cases["cce_builtin_twice"] = ("cce", "builtin")
    for case, (name, impl_of_custom) in cases.items():
        runs = {}
        for role, impl in (("custom", impl_of_custom), ("builtin", "builtin")):
            cfg = config(f"loss={name}", f"loss.impl={impl}")
            keras.utils.set_random_seed(0)
            objective, model = compiled(cfg, dataset)
            size = cfg.trainer.batch_size
            x, y = dataset.x_train, objective.encode_labels(dataset.y_train)
            batches = [(x[i : i + size], y[i : i + size]) for i in range(0, len(x) - size + 1, size)]

            def block(model: keras.Model = model, batches: list = batches) -> None:
                for step in range(steps):
                    model.train_on_batch(*batches[step % len(batches)])

            block()  # traces the train function
            runs[role] = block
        alternating(runs, warm_up, 1)  # warm-up: the first blocks after tracing run slower, for either impl
        measured = alternating(runs, blocks, rounds)
        target = "1.00 (the method's noise)" if impl_of_custom == "builtin" else "<= 1.02"
        results[case] = {**paired_summary(measured, target), "steps_per_block": steps}
    return results


def _step(loss: keras.losses.Loss, y: Any, z: Any, jit: bool) -> Callable[[], Any]:
    """The compiled value and gradient of `loss` at logits `z`, as a call that waits for the result."""
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def step() -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    step()  # traces (and compiles, under XLA)
    return lambda: [t.numpy() for t in step()]


def loss_forward_backward_ratio(
    batch: int, repeat: int, rounds: int = 5, every_xla_cell: bool = True
) -> dict[str, Any]:
    """Per loss class with a built-in: one compiled forward and backward pass, custom over builtin,
    on (batch, 10) logits and, for the binary losses, (batch, 1), with `tf.function` and with XLA
    (`every_xla_cell=False`, for `--quick`: under XLA only BinaryCrossentropy at (batch, 1), each XLA compile costing
    seconds).

    A control per compile mode times the built-in BCE at (batch, 1) against a second instance of itself:
    its round ratios are the method's noise, and each cell's verdict is read against them.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    control: dict[str, Any] = {}
    cells = []
    for classes in (10, 1):
        logits = tf.constant(rng.normal(scale=3.0, size=(batch, classes)).astype("float32"))
        labels = rng.integers(0, max(classes, 2), size=batch)
        # Multi-class labels for the categorical losses; one-vs-rest indicators (or, with one output,
        # the labels themselves) for the binary ones.
        binary = (labels[:, None] == np.arange(classes)) if classes > 1 else labels[:, None]
        targets = {
            "sparse": tf.constant(labels.astype("int32")),
            "onehot": tf.constant(np.eye(classes, dtype="float32")[labels % classes]),
            "binary": tf.constant(binary.astype("float32")),
        }
        for mode, jit in (("tf_function", False), ("xla", True)):
            if classes == 1:
                steps = {
                    impl: _step(keras.losses.BinaryCrossentropy(from_logits=True), targets["binary"], logits, jit)
                    for impl in ("builtin", "custom")
                }
                control[mode] = paired_summary(alternating(steps, repeat, rounds), "1.00 (the method's noise)")
            for class_name, target in BUILTIN_PAIRS.items():
                if classes == 1 and target != "binary":
                    continue
                if jit and not every_xla_cell and (classes, class_name) != (1, "BinaryCrossentropy"):
                    continue
                steps = {
                    impl: _step(getattr(module, class_name)(from_logits=True), targets[target], logits, jit)
                    for impl, module in (("builtin", keras.losses), ("custom", losses))
                }
                figure = paired_summary(alternating(steps, repeat, rounds), "<= 1.00")
                results.setdefault(class_name, {}).setdefault(f"{batch}x{classes}", {})[mode] = figure
                cells.append((mode, figure))
    for mode, figure in cells:
        figure["verdict"] = noise_verdict(figure["ratios"], control[mode]["ratios"])
    worst = max(figure["ratio"] for _, figure in cells)
    return {"batch": batch, "worst_ratio": worst, "control_builtin_over_builtin": control, "losses": results}

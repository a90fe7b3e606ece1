"""Plots logged with every run (the reliability diagram lives in xent_lab.calibration)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def loss_curves(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Training and validation loss (left) and accuracy (right) per epoch, from a Keras `History.history`."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + key)
            if values:
                axes.plot(range(len(values)), values, marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(key)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure

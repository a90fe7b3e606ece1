"""Where a training's per-epoch values go: sinks of epoch events, emitted by `callbacks.EpochEvents`.

Training knows no store. `MemorySink` keeps the events (tests, and anything that wants them after the fit);
`ConsoleLine` prints one compact line per epoch; the MLflow sink, which logs each epoch as the run trains,
is `xent_lab.record.MlflowSink`. An epoch's values carry Keras' names (`loss`, `val_loss`, `accuracy`) and the
names the callbacks before `EpochEvents` wrote into the epoch's logs (`val/ece`, `perf/calibration_seconds`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Protocol

from xent_lab.tracking import tags as T


@dataclass(frozen=True)
class Divergence:
    """Where the training loss first became NaN or infinite."""

    step: int  # global, 0-based: epoch * steps_per_epoch + batch
    epoch: int
    batch: int
    loss: float

    def __str__(self) -> str:
        return f"diverged at step {self.step} (epoch {self.epoch}, batch {self.batch})"


@dataclass(frozen=True)
class Epoch:
    """One finished epoch: its 0-based index, its values and its wall time."""

    epoch: int
    values: dict[str, float]
    seconds: float


class EpochSink(Protocol):
    """Receives a training's events as they happen."""

    def epoch(self, event: Epoch) -> None: ...

    def diverged(self, divergence: Divergence) -> None: ...


@dataclass
class MemorySink:
    """Keeps every event in memory."""

    epochs: list[Epoch] = field(default_factory=list)
    divergence: Divergence | None = None

    def epoch(self, event: Epoch) -> None:
        self.epochs.append(event)

    def diverged(self, divergence: Divergence) -> None:
        self.divergence = divergence

    def history(self, name: str) -> list[float]:
        """The value `name` of each epoch that has it."""
        return [event.values[name] for event in self.epochs if name in event.values]


# Shown on the console line, in this order, when the epoch has them: (name in the epoch's values, label).
_CONSOLE = (
    ("loss", "loss"),
    ("accuracy", "accuracy"),
    ("val_loss", "val loss"),
    ("val_accuracy", "val accuracy"),
    (T.val_metric("ece"), "val ECE"),
)


@dataclass
class ConsoleLine:
    """Prints one line per epoch (`trainer.verbose` 2): loss, accuracy, validation loss, accuracy and ECE, time."""

    epochs: int

    def epoch(self, event: Epoch) -> None:
        shown = [f"{label} {event.values[name]:.4f}" for name, label in _CONSOLE if name in event.values]
        width = len(str(self.epochs))
        print(f"epoch {event.epoch + 1:>{width}}/{self.epochs}  " + "  ".join([*shown, f"{event.seconds:.1f} s"]))
        sys.stdout.flush()

    def diverged(self, divergence: Divergence) -> None:
        pass  # the run's summary says where

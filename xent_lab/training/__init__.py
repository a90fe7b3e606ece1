"""The training harness: runtime (device, precision, seeds), callbacks, fit, evaluation, and the pipeline.

`train(cfg, sink)` runs one training from a composed config and returns its `RunResult`; it knows no store
(MLflow is `xent_lab.record`, which `xent_lab.train`, the command line, calls).
"""

from xent_lab.training.events import Epoch, EpochSink, MemorySink
from xent_lab.training.pipeline import fit_and_evaluate, prepare, train
from xent_lab.training.result import Evaluation, RunResult, Setup

__all__ = [
    "Epoch",
    "EpochSink",
    "Evaluation",
    "MemorySink",
    "RunResult",
    "Setup",
    "fit_and_evaluate",
    "prepare",
    "train",
]

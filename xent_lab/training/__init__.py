"""The training harness: runtime (device, precision, seeds), callbacks, fit, evaluation, and the pipeline.

`train(cfg)` runs one job from a composed config; `xent_lab.train` is its command line.
"""

from xent_lab.training.pipeline import train

__all__ = ["train"]

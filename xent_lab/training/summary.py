"""What a run says about itself: its note (its name: `study.run_name`; the console summary: `xent_lab.record`)."""

from __future__ import annotations

import math

import keras
from omegaconf import DictConfig

from xent_lab.losses.registry import note_settings
from xent_lab.tracking import tags as T
from xent_lab.training.events import Divergence
from xent_lab.training.runtime import Runtime


def run_note(cfg: DictConfig, results: dict[str, float], runtime: Runtime, divergence: Divergence | None = None) -> str:
    """The run's note in the MLflow UI (Markdown): what was trained and how it came out (or where it diverged)."""
    loss = cfg.loss
    details = [f"from_logits={loss.from_logits}"]
    if loss.label_smoothing:
        details.append(f"label_smoothing={loss.label_smoothing}")
    details.extend(note_settings(loss))  # the settings that tell runs of this loss apart
    if loss.impl == "naive":
        details.append(f"epsilon={loss.epsilon}")
    if loss.class_weight:
        details.append(f"class_weight={loss.class_weight}")
    ece_ts = results.get(T.TEST_ECE_TS, math.nan)
    temperature = results.get(T.TEST_TEMPERATURE, math.nan)
    lines = [
        f"**{cfg.dataset.name}** · model `{cfg.model.name}` · loss **{loss.name}** ({loss.impl}; {', '.join(details)})"
        f" · seed {cfg.seed} · {cfg.trainer.epochs} epochs on {runtime.device_name}",
        "",
    ]
    if divergence is not None:
        return "\n".join([*lines, f"- **{divergence_line(divergence)}**"])
    lines += [
        # A list, not a table: MLflow's note renderer draws tables without cell padding.
        f"- test accuracy **{results[T.TEST_ACCURACY]:.4f}**{_interval(results, T.TEST_ACCURACY)}, "
        f"test loss {results[T.TEST_LOSS]:.4f}",
        f"- ECE {results[T.TEST_ECE]:.4f}{_interval(results, T.TEST_ECE)}; after temperature scaling {ece_ts:.4f} "
        f"(T = {temperature:.3f})",
    ]
    for name in ("nll", "brier", "debiased_ece", "smooth_ece"):
        metric = T.test_metric(name)
        if metric in results:
            lines.append(f"- {name} {results[metric]:.4f}{_interval(results, metric)}")
    return "\n".join(lines)


def _interval(results: dict[str, float], metric: str) -> str:
    """` [low, high]`, the metric's 95% bootstrap interval, when the run computed one."""
    low, high = results.get(f"{metric}/{T.CI_LOW}"), results.get(f"{metric}/{T.CI_HIGH}")
    return "" if low is None or high is None else f" [{low:.4f}, {high:.4f}]"


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


def divergence_line(divergence: Divergence) -> str:
    return (
        f"{divergence}: the training loss became {divergence.loss}; training stopped there and the NaN weights "
        "were not evaluated (trainer.on_nonfinite=record)"
    )

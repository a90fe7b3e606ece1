"""What a finished run leaves in MLflow besides metrics: config, plots and predictions (the model: logged_model)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from xent_lab import calibration, heads
from xent_lab.data import Dataset
from xent_lab.objectives import Objective
from xent_lab.tracking import RunLogger, scrub
from xent_lab.tracking import tags as T
from xent_lab.training import plots
from xent_lab.training.summary import model_summary


def log_config(run: RunLogger, cfg: DictConfig, overrides: list[str], model: keras.Model, uri: str) -> None:
    """The resolved config and the command-line overrides (passwords hidden), and the model's layers."""
    run.log_text(scrub(OmegaConf.to_yaml(cfg, resolve=True), uri), T.CONFIG_ARTIFACT)
    run.log_text(scrub(OmegaConf.to_yaml(OmegaConf.create(overrides)), uri), T.OVERRIDES_ARTIFACT)
    run.log_text(model_summary(model), T.MODEL_SUMMARY_ARTIFACT)


def log_outputs(
    run: RunLogger,
    cfg: DictConfig,
    title: str,
    dataset: Dataset,
    objective: Objective,
    logits: dict[str, np.ndarray],
    history: dict[str, list[float]],
    recal_params: dict[str, dict],
    last_epoch_test_logits: np.ndarray | None = None,
) -> None:
    """Loss curves, reliability diagrams (validation and test), the validation and test predictions, and the
    fitted parameters of each recalibration method (one JSON each). `last_epoch_test_logits`
    (`trainer.keep=best_val_accuracy`): the last epoch's test predictions too, as a second artifact."""
    run.log_figure(plots.loss_curves(history, title), T.LOSS_CURVES_ARTIFACT)
    for split, labels in (("val", dataset.y_val), ("test", dataset.y_test)):
        figure = calibration.reliability_diagram(
            heads.probabilities(logits[split], objective.head),
            labels,
            cfg.calibration.n_bins,
            title=f"{title} ({split})",
        )
        run.log_figure(figure, T.RELIABILITY_ARTIFACT.format(split=split))
    # The validation logits too: `python -m xent_lab.calibrate RUN_ID` refits recalibration methods on them.
    saved = [
        (T.PREDICTIONS_ARTIFACT, logits["test"], dataset.y_test),
        (T.VAL_PREDICTIONS_ARTIFACT, logits["val"], dataset.y_val),
    ]
    if last_epoch_test_logits is not None:
        saved.append((T.LAST_EPOCH_PREDICTIONS_ARTIFACT, last_epoch_test_logits, dataset.y_test))
    with tempfile.TemporaryDirectory() as tmp:
        for artifact, split_logits, labels in saved:
            predictions = Path(tmp) / Path(artifact).name
            calibration.save_predictions(predictions, split_logits, labels, objective.head)
            run.log_artifact(predictions, str(Path(artifact).parent))
    for method, params in recal_params.items():
        run.log_text(json.dumps(params, indent=2), T.RECAL_PARAMS_ARTIFACT.format(method=method))

"""What a run leaves in MLflow besides metrics: config, plots and predictions (the model: logged_model).

The config goes in when the run opens; the outputs of a finished run are written into its local record
(`stage_outputs`), from where `publish` uploads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
from omegaconf import DictConfig, OmegaConf

from xent_lab import calibration, heads
from xent_lab.record import plots
from xent_lab.tracking import LocalRecord, RunLogger, scrub
from xent_lab.tracking import tags as T
from xent_lab.tracking.record import artifact_folder
from xent_lab.training.result import RunResult
from xent_lab.training.summary import model_summary


def log_config(run: RunLogger, cfg: DictConfig, overrides: list[str], model: keras.Model, uri: str) -> None:
    """The resolved config and the command-line overrides (passwords hidden), and the model's layers."""
    run.log_text(scrub(OmegaConf.to_yaml(cfg, resolve=True), uri), T.CONFIG_ARTIFACT)
    run.log_text(scrub(OmegaConf.to_yaml(OmegaConf.create(overrides)), uri), T.OVERRIDES_ARTIFACT)
    run.log_text(model_summary(model), T.MODEL_SUMMARY_ARTIFACT)


def stage_outputs(record: LocalRecord, cfg: DictConfig, title: str, result: RunResult) -> list[tuple[Path, str | None]]:
    """Write into `record`: loss curves, reliability diagrams (validation and test), the validation and test
    predictions, and the fitted parameters of each recalibration method (one JSON each); with
    `trainer.keep=best_val_accuracy`, the last epoch's test predictions too, as a second artifact.

    Returns the files written, each with its artifact folder, for the upload."""
    dataset, head = result.setup.dataset, result.setup.objective.head
    written = {T.LOSS_CURVES_ARTIFACT: record.figure(plots.loss_curves(result.history, title), T.LOSS_CURVES_ARTIFACT)}
    for split, labels in (("val", dataset.y_val), ("test", dataset.y_test)):
        figure = calibration.reliability_diagram(
            heads.probabilities(result.logits[split], head),
            labels,
            cfg.calibration.n_bins,
            title=f"{title} ({split})",
        )
        artifact = T.RELIABILITY_ARTIFACT.format(split=split)
        written[artifact] = record.figure(figure, artifact)
    # The validation logits too: `python -m xent_lab.calibrate RUN_ID` refits recalibration methods on them.
    saved = [
        (T.PREDICTIONS_ARTIFACT, result.logits["test"], dataset.y_test),
        (T.VAL_PREDICTIONS_ARTIFACT, result.logits["val"], dataset.y_val),
    ]
    if result.last_epoch_test_logits is not None:
        saved.append((T.LAST_EPOCH_PREDICTIONS_ARTIFACT, result.last_epoch_test_logits, dataset.y_test))
    for artifact, logits, labels in saved:
        written[artifact] = calibration.save_predictions(record.target(artifact), logits, labels, head)
    recalibrated = result.evaluation.recalibrated if result.evaluation is not None else {}
    for method, fitted in recalibrated.items():
        artifact = T.RECAL_PARAMS_ARTIFACT.format(method=method)
        written[artifact] = record.text(json.dumps(fitted.params, indent=2), artifact)
    return [(path, artifact_folder(artifact)) for artifact, path in written.items()]

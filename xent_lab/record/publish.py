"""Publishing a finished training: its local record first, the source of truth, then MLflow.

`publish` writes what `training.train` returned into the run's record (final metrics, note, plots,
predictions, recalibration parameters), then sends the same `Contents` to MLflow with `RunLogger.upload`,
the call that `xent_lab.tracking.relog` uploads a whole record with. The MLflow Model (`tracking.log_model`)
is MLflow's alone; the record keeps the checkpoint instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from omegaconf import DictConfig

from xent_lab import stopping
from xent_lab.record import artifacts, logged_model
from xent_lab.record.metrics import final_metrics
from xent_lab.tracking import RunLogger, Tracker, redact
from xent_lab.tracking import tags as T
from xent_lab.tracking.record import Contents, metric_values
from xent_lab.training import summary
from xent_lab.training.events import Divergence
from xent_lab.training.result import RunResult


def publish(
    result: RunResult,
    run: RunLogger,
    cfg: DictConfig,
    title: str,
    params: dict[str, str],
    inputs: Mapping[str, Mapping[str, str]],
    uri: str,
) -> dict[str, float]:
    """Write the finished `result` to `run` (which must have a record); returns its final metrics.

    `title`: the run's name, on its plots; `params`: the run's params, given to its logged model; `inputs`: the
    datasets it read by split (the test metrics are tied to "test" through the logged model)."""
    if run.record is None:
        raise ValueError("publish writes the local record first: open the run with a record folder")
    results = final_metrics(result)
    setup, diverged = result.setup, result.divergence is not None
    staged = Contents(
        metrics=metric_values(results, result.epochs_run, int(time.time() * 1000)),
        tags={T.NOTE: summary.run_note(cfg, results, setup.runtime, result.divergence)},
        # trainer.on_nonfinite=record: no model, predictions or plots of NaN weights
        files=[] if diverged else artifacts.stage_outputs(run.record, cfg, title, result),
    )
    run.record.add(staged)
    stopping.check()
    model_id = None
    if not diverged:
        model_id = logged_model.log_model(
            run, cfg.tracking, uri, setup.logits_model, setup.objective.head, setup.dataset, result.epochs_run, params
        )
    run.upload(staged, model_id, inputs["test"] if model_id else None)
    return results


def console_summary(
    results: dict[str, float], tracker: Tracker, run: RunLogger, divergence: Divergence | None = None
) -> str:
    """The lines printed when a run ends: the results (or where training diverged), and where to find the run."""
    scaled = (
        f" (after temperature scaling {results[T.TEST_ECE_TS]:.4f}, T={results[T.TEST_TEMPERATURE]:.3f})"
        if T.TEST_TEMPERATURE in results
        else ""
    )
    lines = [
        "",
        summary.divergence_line(divergence)
        if divergence is not None
        else f"test accuracy {results[T.TEST_ACCURACY]:.4f}   test loss {results[T.TEST_LOSS]:.4f}   "
        f"ECE {results[T.TEST_ECE]:.4f}{scaled}",
    ]
    if run.lost is None:
        lines.append(f"MLflow run {run.run_id} in {redact(tracker.uri)} (experiment '{tracker.experiment}')")
        if not tracker.uri.startswith("http"):
            lines.append(f"open it: mlflow ui --backend-store-uri {redact(tracker.uri)}   (or `make ui`), then")
        lines.append(f"  {tracker.run_url(run)}")
    return "\n".join(lines)

"""Per-row tables of a dataset beyond the results: the runs' bootstrap intervals, calibration before and after
temperature scaling, the test ECE after each recalibration method (the best chosen on validation), and
over-fitting (`overfit`)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab import calibration
from xent_lab.calibration.recalibration import MIN_FIT_SAMPLES
from xent_lab.report.load import Job, job_predictions
from xent_lab.report.markdown import COLUMNS, NO_VALUE, interval_cell, markdown_table
from xent_lab.report.overfit import RULE as OVERFIT_RULE
from xent_lab.report.overfit import Overfit
from xent_lab.report.stats import CONFIDENCE, Summary, finished_values, summarize
from xent_lab.tracking import tags

Variants = Mapping[str, Mapping[str, Sequence[Job]]]  # variant -> impl -> jobs
UNCALIBRATED = "none"


def _rows(variants: Variants) -> list[tuple[str, str, list[Job]]]:
    return [(variant, impl, list(jobs)) for variant, by_impl in variants.items() for impl, jobs in by_impl.items()]


def _mean_interval(summary: Summary | None, digits: int) -> str:
    """`mean [low, high]`; the value alone for one seed."""
    if summary is None:
        return NO_VALUE
    if summary.n < 2:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} {interval_cell(summary, digits)}"


# The calibration errors shown before and after temperature scaling (test/<name>, test/recal/temperature/<name>).
SCALED = (("ece", "ECE"), ("adaece", "AdaECE"), ("classwise_ece", "classwise ECE"))


def _mean_bounds(jobs: Sequence[Job], metric: str) -> tuple[float, float] | None:
    """Mean over the finished jobs of a metric's bootstrap bounds; None when none logged them."""
    pairs = [
        (low, high)
        for job in jobs
        if job.finished
        and (low := job.metric(f"{metric}/{tags.CI_LOW}")) is not None
        and (high := job.metric(f"{metric}/{tags.CI_HIGH}")) is not None
    ]
    return tuple(np.mean(pairs, axis=0)) if pairs else None


def bootstrap_section(variants: Variants) -> list[str]:
    """Mean over seeds of each run's bootstrap interval bounds, for the columns whose runs logged them."""
    jobs = [job for _, _, row_jobs in _rows(variants) for job in row_jobs]
    columns = [c for c in COLUMNS if finished_values(jobs, f"{c.metric}/{tags.CI_LOW}")]
    heading = [f"### {CONFIDENCE:.0%} bootstrap intervals on the test set (mean of the runs' bounds)", ""]
    if not columns:
        return [*heading, "No run logged bootstrap intervals (`calibration.bootstrap=0`).", ""]
    rows = []
    for variant, impl, row_jobs in _rows(variants):
        cells = []
        for c in columns:
            found = _mean_bounds(row_jobs, c.metric)
            cells.append(NO_VALUE if found is None else f"[{found[0]:.{c.digits}f}, {found[1]:.{c.digits}f}]")
        rows.append([variant, impl, sum(job.finished for job in row_jobs), *cells])
    return [
        *heading,
        "Each run's percentile bootstrap of its test samples (`calibration.bootstrap` resamples); a cell is the "
        "mean over the row's seeds of the runs' lower and upper bounds. It shows the test set's sampling noise, "
        "the Student-t interval above the seeds'.",
        "",
        *markdown_table(["variant", "impl", "seeds", *(c.label for c in columns)], rows),
        "",
    ]


def _scaled_cell(jobs: Sequence[Job], metric: str) -> str:
    """`mean [mean bootstrap bounds]` of a metric over a row's finished seeds."""
    values = finished_values(jobs, metric)
    if not values:
        return NO_VALUE
    bounds = _mean_bounds(jobs, metric)
    interval = "" if bounds is None else f" [{bounds[0]:.4f}, {bounds[1]:.4f}]"
    return f"{np.mean(values):.4f}{interval}"


def temperature_section(variants: Variants) -> list[str]:
    """ECE, AdaECE and classwise ECE before and after temperature scaling, with the runs' bootstrap bounds;
    nothing when no run logged the temperature-scaled AdaECE (`calibration.methods` without temperature)."""
    after = {name: tags.recal_metric("temperature", name) for name, _ in SCALED}
    jobs = [job for _, _, row_jobs in _rows(variants) for job in row_jobs]
    if not finished_values(jobs, after["adaece"]):
        return []
    rows = []
    for variant, impl, row_jobs in _rows(variants):
        cells = [
            cell
            for name, _ in SCALED
            for cell in (_scaled_cell(row_jobs, tags.test_metric(name)), _scaled_cell(row_jobs, after[name]))
        ]
        rows.append([variant, impl, sum(job.finished for job in row_jobs), *cells])
    header = [heading for _, label in SCALED for heading in (label, f"{label} (TS)")]
    return [
        "### Calibration before and after temperature scaling",
        "",
        f"Mean over seeds [mean of the runs' {CONFIDENCE:.0%} bootstrap bounds on the test set]; (TS): after "
        "temperature scaling fitted on the validation split.",
        "",
        *markdown_table(["variant", "impl", "seeds", *header], rows),
        "",
    ]


def recal_methods(jobs: Sequence[Job]) -> list[str]:
    """The recalibration methods whose test ECE a finished job logged (test/recal/<method>/ece)."""
    methods = set()
    for job in jobs:
        for key in job.metrics if job.finished else ():
            method, _, metric = key.removeprefix(tags.RECAL_PREFIX).partition("/")
            if key.startswith(tags.RECAL_PREFIX) and metric == "ece":
                methods.add(method)
    return sorted(methods)


def cross_fitted_ece(predictions: calibration.Predictions, methods: Sequence[str], n_bins: int) -> dict[str, float]:
    """{method: its ECE on validation, cross-fitted}: fitted on one half of the validation samples (a fixed
    random split) and scored on the other, both ways, the mean of the two. Scoring a method on the samples it was
    fitted on would favour the methods with most parameters."""
    logits, labels = predictions.logits, predictions.labels
    order = np.random.default_rng(0).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    if min(len(h) for h in halves) < MIN_FIT_SAMPLES:
        return {}
    scores: dict[str, list[float]] = {}
    for fit, held_out in (halves, halves[::-1]):
        fitted = calibration.fit_methods(logits[fit], labels[fit], predictions.head, methods, n_bins)
        for name, method in fitted.items():
            scored = calibration.ece(method.predict_proba(logits[held_out]), labels[held_out], n_bins)
            scores.setdefault(name, []).append(scored)
    return {name: float(np.mean(values)) for name, values in scores.items()}


def validation_eces(client: MlflowClient, jobs: Sequence[Job]) -> dict[str, dict[str, float]]:
    """run id -> `cross_fitted_ece` of each logged recalibration method, from the run's logged validation
    predictions (of its kept weights: a last-epoch evaluation has none); only when there is a choice to make."""
    methods = recal_methods(jobs)
    found: dict[str, dict[str, float]] = {}
    if len(methods) < 2:
        return found
    with tempfile.TemporaryDirectory(prefix="xent-recal-") as tmp:
        for job in jobs:
            if job.keep == tags.KEEP_LAST or job.run_id in found:
                continue
            predictions = job_predictions(client, job, Path(tmp), tags.VAL_PREDICTIONS_ARTIFACT)
            if predictions is not None:
                n_bins = int(job.params.get("calibration.n_bins", 15))
                found[job.run_id] = cross_fitted_ece(predictions, methods, n_bins)
    return found


def _best_on_validation(jobs: Sequence[Job], val_eces: Mapping[str, Mapping[str, float]]) -> str:
    """The method of lowest mean cross-fitted validation ECE over the row's seeds that have it."""
    per_method: dict[str, list[float]] = {}
    for job in jobs:
        if job.finished and job.keep != tags.KEEP_LAST:
            for method, value in val_eces.get(job.run_id, {}).items():
                per_method.setdefault(method, []).append(value)
    if not per_method:
        return NO_VALUE
    return min(per_method, key=lambda m: np.mean(per_method[m]))


def recalibration_section(variants: Variants, val_eces: Mapping[str, Mapping[str, float]] | None = None) -> list[str]:
    """Test ECE before and after each logged recalibration method, mean [t interval] over seeds; the best method
    chosen on validation (`validation_eces`), never on the test ECE shown beside it."""
    methods = recal_methods([job for _, _, row_jobs in _rows(variants) for job in row_jobs])
    heading = ["### Test ECE after recalibration", ""]
    if not methods:
        return [*heading, "No run logged recalibrated metrics (`calibration.methods`).", ""]
    rows = []
    for variant, impl, row_jobs in _rows(variants):
        summaries = {m: summarize(finished_values(row_jobs, tags.recal_metric(m, "ece"))) for m in methods}
        best = methods[0] if len(methods) == 1 else _best_on_validation(row_jobs, val_eces or {})
        before = summarize(finished_values(row_jobs, tags.TEST_ECE))
        cells = [_mean_interval(s, 4) for s in summaries.values()]
        rows.append([variant, impl, sum(job.finished for job in row_jobs), _mean_interval(before, 4), *cells, best])
    return [
        *heading,
        f"Mean over seeds [{CONFIDENCE:.0%} Student-t interval]; each method is fitted on the validation split "
        f"and scored on test; `{UNCALIBRATED}`: before recalibration. Best on validation: the method of lowest "
        "mean validation ECE, each method fitted on one half of the validation samples and scored on the other, "
        f"both ways ({NO_VALUE}: no validation predictions logged, as for a last-epoch evaluation).",
        "",
        *markdown_table(["variant", "impl", "seeds", UNCALIBRATED, *methods, "best on validation"], rows),
        "",
    ]


def overfit_section(variants: Variants, overfits: Mapping[str, Overfit | None]) -> list[str]:
    """Per row: how many seeds over-fitted, the final training accuracy, where validation NLL bottomed out."""
    rows = []
    for variant, impl, row_jobs in _rows(variants):
        found = [o for job in row_jobs if (o := overfits.get(job.run_id)) is not None]
        if not found:
            rows.append([variant, impl, 0, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE])
            continue
        rows.append(
            [
                variant,
                impl,
                len(found),
                f"{sum(o.overfitted for o in found)}/{len(found)}",
                f"{np.mean([o.final_train_accuracy for o in found]):.4f}",
                ", ".join(f"{o.best_epoch + 1} of {o.last_epoch + 1}" for o in found),
                f"{np.mean([o.best_val_nll for o in found]):.4f}",
                f"{np.mean([o.rise for o in found]):+.4f}",
            ]
        )
    header = ["variant", "impl", "seeds", "over-fitted", "final train accuracy", "val NLL min at epoch"]
    return [
        "### Over-fitting",
        "",
        f"A run over-fitted when its {OVERFIT_RULE}. Epochs count from 1, one per seed; the "
        "min and the rise after it (last epoch − min) are means over seeds.",
        "",
        *markdown_table([*header, "min val NLL", "rise after min"], rows),
        "",
    ]

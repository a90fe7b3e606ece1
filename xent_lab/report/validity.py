"""Threats to validity, computed from the runs: the one data split, the regime, the model sizes and the noise floor
of binned ECE.

The noise floor is the binned ECE that a perfectly calibrated model would still show on this test set: outcomes
drawn as Bernoulli(confidence) for the run's own top-label confidences, scored with the run's bins. Differences of
binned ECE below it are within what sampling the test set alone produces.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab import heads
from xent_lab.calibration.binning import expected_gap, top_label, uniform_bin_ids
from xent_lab.report.headline import Table, view_title
from xent_lab.report.load import CUSTOM, KEEP_KEY, Groups, Job, job_predictions, seed_order
from xent_lab.report.paper_numbers import CIFAR_ERROR
from xent_lab.report.stats import finished_values
from xent_lab.tracking import tags

HEADING = "## Threats to validity"
DRAWS = 200
_TOTAL_PARAMS = re.compile(r"Total params:\s*([\d,]+)")


def binned_ece_floor(confidence: np.ndarray, n_bins: int, draws: int = DRAWS, seed: int = 0) -> float:
    """The expected equal-width binned ECE of a perfectly calibrated model with these top-label confidences:
    the mean over `draws` of the ECE of outcomes drawn as Bernoulli(confidence)."""
    ids = uniform_bin_ids(confidence, n_bins)
    counts = np.bincount(ids, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(ids, confidence, n_bins) / counts
        rng = np.random.default_rng(seed)
        values = [
            expected_gap(
                counts, mean_confidence, np.bincount(ids, rng.random(confidence.size) < confidence, n_bins) / counts
            )
            for _ in range(draws)
        ]
    return float(np.mean(values))


class Floor(NamedTuple):
    """The noise floor over the rows of one dataset and evaluation: its range, the test size and the bins."""

    low: float
    high: float
    samples: int
    n_bins: int


def _first_finished(jobs: Sequence[Job]) -> Job | None:
    """The finished job of the lowest seed."""
    finished = [job for job in jobs if job.finished]
    return min(finished, key=lambda job: seed_order(job.seed), default=None)


def noise_floors(client: MlflowClient, groups: Groups) -> dict[str, Floor]:
    """ "dataset" or "dataset, `trainer.keep=...`" -> the floor over its custom rows (the first finished seed of
    each), from their logged test predictions; datasets without predictions are left out."""
    found: dict[str, list[tuple[float, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="xent-floor-") as tmp:
        for dataset, variants in groups.items():
            for by_impl in variants.values():
                jobs = by_impl.get(CUSTOM) or next(iter(by_impl.values()))
                job = _first_finished(jobs)
                predictions = None if job is None else job_predictions(client, job, Path(tmp))
                if predictions is None:
                    continue
                n_bins = int(job.params.get("calibration.n_bins", 15))
                confidence, _ = top_label(heads.probabilities(predictions.logits, predictions.head), predictions.labels)
                label = view_title(dataset, job.overrides.get(KEEP_KEY))
                found.setdefault(label, []).append((binned_ece_floor(confidence, n_bins), len(confidence), n_bins))
    return {
        label: Floor(min(f for f, _, _ in floors), max(f for f, _, _ in floors), floors[0][1], floors[0][2])
        for label, floors in found.items()
    }


def model_sizes(client: MlflowClient, groups: Groups) -> dict[str, str]:
    """model name -> its parameter count, read from one run's logged Keras summary."""
    sizes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="xent-size-") as tmp:
        for variants in groups.values():
            for by_impl in variants.values():
                job = _first_finished([job for jobs in by_impl.values() for job in jobs])
                name = None if job is None else job.params.get("model.name")
                if name is None or name in sizes:
                    continue
                listed = client.list_artifacts(job.run_id)
                if any(item.path == tags.MODEL_SUMMARY_ARTIFACT for item in listed):
                    path = client.download_artifacts(job.run_id, tags.MODEL_SUMMARY_ARTIFACT, tmp)
                    found = _TOTAL_PARAMS.search(Path(path).read_text(encoding="utf-8"))
                    sizes[name] = f"{found.group(1)} parameters" if found else "size not in its summary"
    return sizes


def _values(jobs: Sequence[Job], key: str) -> str:
    values = sorted({job.params[key] for job in jobs if job.finished and key in job.params})
    return "/".join(values) if values else "not logged"


def _evaluations(jobs: Sequence[Job]) -> str:
    keeps = sorted({job.overrides.get(KEEP_KEY) or job.params.get(KEEP_KEY, tags.KEEP_LAST) for job in jobs})
    return " and ".join(f"`{KEEP_KEY}={keep}`" for keep in keeps)


def _regime(groups: Groups) -> list[str]:
    """Per dataset: epochs, the evaluation(s), and the mean fitted T of its rows, by row."""
    lines = []
    for dataset, variants in groups.items():
        jobs = [job for by_impl in variants.values() for impl_jobs in by_impl.values() for job in impl_jobs]
        temperatures = [
            (variant, float(np.mean(t)))
            for variant, by_impl in variants.items()
            if (t := finished_values([job for jobs_ in by_impl.values() for job in jobs_], tags.TEST_TEMPERATURE))
        ]
        above = sum(t > 1 for _, t in temperatures)
        spread = (
            f"mean fitted T from {min(t for _, t in temperatures):.2f} to {max(t for _, t in temperatures):.2f} "
            f"over its rows, above 1 (over-confident) in {above} of {len(temperatures)}"
            if temperatures
            else "no temperature logged"
        )
        lines.append(
            f"  - {dataset}: `{_values(jobs, 'model.name')}` trained for `trainer.epochs`="
            f"{_values(jobs, 'trainer.epochs')} on {_values(jobs, 'dataset.limit.train').replace('None', 'all the')} "
            "training examples, evaluated at "
            f"{_evaluations(jobs)}; {spread}."
        )
    return lines


def threats_section(
    groups: Groups, floors: Mapping[str, Floor], sizes: Mapping[str, str], ece_differences: Mapping[str, float]
) -> list[str]:
    """The section. `ece_differences`: "dataset, evaluation" -> the largest |Δ| of binned ECE after temperature
    scaling between a row and its baseline, set against the floor."""
    jobs = [
        job for variants in groups.values() for by_impl in variants.values() for js in by_impl.values() for job in js
    ]
    lines = [
        HEADING,
        "",
        f"- **One split.** Every run uses the validation split of "
        f"`dataset.val_seed={_values(jobs, 'dataset.val_seed')}` and the one official test set: the seeds vary the "
        "training only, so every interval here is conditional on that split.",
        "- **The regime** (a finding holds for these sizes only):",
        *_regime(groups),
        "- **Model sizes:** "
        + ("; ".join(f"`{name}` {size}" for name, size in sorted(sizes.items())) or "no model summary logged")
        + f"; the paper's CIFAR-10 networks are {', '.join(CIFAR_ERROR)}.",
        "- **The binned-ECE noise floor:** the expected binned ECE of a perfectly calibrated model with each row's "
        f"own confidences on this test set (outcomes drawn as Bernoulli(confidence), {DRAWS} draws; the first seed "
        "of each row):",
    ]
    for label, floor in floors.items():
        line = (
            f"  - {label}: {floor.low:.4f} to {floor.high:.4f} over the rows ({floor.samples} test samples, "
            f"{floor.n_bins} bins)"
        )
        if label in ece_differences:
            largest = ece_differences[label]
            relation = "below" if largest < floor.high else "above"
            line += f"; the largest |Δ| of binned ECE after temperature scaling, {largest:.4f}, is {relation} it"
        lines.append(line + ".")
    if not floors:
        lines.append("  - not computed: no run logged test predictions.")
    return [*lines, ""]


def largest_ece_ts_differences(tables: Sequence[Table]) -> dict[str, float]:
    """Headline table title -> the largest |mean binned ECE after temperature scaling of a compared row − its
    baseline's|."""
    found = {}
    for table in tables:
        gaps = [
            abs(float(np.mean(mine)) - float(np.mean(theirs)))
            for line in table.lines
            if line.compared
            and (mine := finished_values(line.row.jobs, tags.TEST_ECE_TS))
            and (theirs := finished_values(line.baseline.jobs, tags.TEST_ECE_TS))
        ]
        if gaps:
            found[table.title] = max(gaps)
    return found

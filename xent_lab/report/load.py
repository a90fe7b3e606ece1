"""The runs of one launch of a study, read back from MLflow: its parent run, its jobs and the runs it reused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab import calibration, tracking
from xent_lab.errors import TrackingError, XentError
from xent_lab.tracking import tags
from xent_lab.tracking.store import open_existing

CUSTOM, BUILTIN = "custom", "builtin"  # values of the `impl` tag
# Swept values that do not make a row: seeds are averaged over, implementations get a row each.
NOT_VARIANT = ("seed", "loss.impl")
KEEP_KEY = "trainer.keep"  # the key of a run's two evaluations (`evaluations`)
PAGE_SIZE = 1000  # runs per search_runs request
# A study name goes into a search filter and a folder name: no quotes, no path separators.
STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class ReportError(XentError):
    """The study, its experiment or its parent run cannot be found, or a run's tags are malformed."""


@dataclass(frozen=True)
class Job:
    """One child run of the launch: trained by it, or reused from an earlier launch; or one of its two
    evaluations (`evaluations`): `keep` = tags.KEEP_BEST, the kept weights (its test/* metrics), or
    tags.KEEP_LAST, the last epoch's (its last_epoch/test/* metrics, read here as test/*).

    Read a job's numbers through `metric`, `metrics` and `params`, never `run.data`: they are the view's."""

    run: Run
    reused: bool
    keep: str | None = None  # None: the run as it is, one evaluation

    @property
    def tags(self) -> Mapping[str, str]:
        return self.run.data.tags

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def dataset(self) -> str:
        return self.tags.get(tags.DATASET, "unknown")

    @property
    def impl(self) -> str:
        return self.tags.get(tags.IMPL, "unknown")

    @property
    def seed(self) -> str:
        return self.tags.get(tags.SEED, "?")

    @property
    def finished(self) -> bool:
        return self.run.info.status == "FINISHED"

    @property
    def overrides(self) -> dict[str, str]:
        """This job's swept values (`xent.job_overrides`), and `trainer.keep` for one of two evaluations."""
        swept = _json_tag(self.run, tags.JOB_OVERRIDES)
        return swept if self.keep is None else {**swept, KEEP_KEY: self.keep}

    @property
    def params(self) -> Mapping[str, str]:
        return self.run.data.params

    @cached_property
    def metrics(self) -> Mapping[str, float]:
        """The run's metrics as this evaluation sees them: for the last epoch, last_epoch/<name> as <name>,
        the kept weights' test/* left out, and train/kept_epoch the last epoch."""
        metrics = self.run.data.metrics
        if self.keep is None:
            return metrics
        own = {key: value for key, value in metrics.items() if not key.startswith(tags.LAST_EPOCH_PREFIX)}
        if self.keep != tags.KEEP_LAST:
            return own
        last = {k.removeprefix(tags.LAST_EPOCH_PREFIX): v for k, v in metrics.items() if k not in own}
        shared = {key: value for key, value in own.items() if not key.startswith(tags.TEST_PREFIX)}
        if tags.EPOCHS_RUN in shared:
            shared[tags.KEPT_EPOCH] = shared[tags.EPOCHS_RUN] - 1
        return {**shared, **last}

    @property
    def predictions_artifact(self) -> str:
        """The artifact of this evaluation's test predictions."""
        return tags.LAST_EPOCH_PREDICTIONS_ARTIFACT if self.keep == tags.KEEP_LAST else tags.PREDICTIONS_ARTIFACT

    @property
    def variant(self) -> str:
        """The swept values other than seed and implementation, e.g. `loss=focal_flsd53`."""
        rest = {key: value for key, value in self.overrides.items() if key not in NOT_VARIANT}
        if not rest:
            rest = {"loss": self.tags.get(tags.LOSS, "unknown")}
        return ", ".join(f"{key}={value}" for key, value in rest.items())

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)


def evaluations(job: Job) -> tuple[Job, ...]:
    """The job as the results rows count it. A run kept at its best validation accuracy (tag xent.keep =
    best_val_accuracy) that also evaluated its last epoch (last_epoch/* metrics; a failed run may have none)
    is two: `trainer.keep=best_val_accuracy` and `trainer.keep=last`. Any other run is itself."""
    two = job.tags.get(tags.KEEP) == tags.KEEP_BEST and (
        not job.finished or any(key.startswith(tags.LAST_EPOCH_PREFIX) for key in job.run.data.metrics)
    )
    if job.keep is not None or not two:
        return (job,)
    return replace(job, keep=tags.KEEP_BEST), replace(job, keep=tags.KEEP_LAST)


@dataclass(frozen=True)
class Launch:
    """The parent run of one launch of a study and the jobs the report describes."""

    study: str
    experiment: str
    parent: Run
    jobs: tuple[Job, ...]
    missing_reused: tuple[str, ...]  # run ids named by xent.reused.* tags but not found

    @property
    def sweep(self) -> dict[str, str]:
        """The launch's swept keys -> their values as written (`xent.sweep`), e.g. `loss` -> `cce,focal`."""
        return _json_tag(self.parent, tags.SWEEP)


# dataset -> variant -> impl -> jobs, each level in sorted order.
Groups = dict[str, dict[str, dict[str, list[Job]]]]


def _json_tag(run: Run, key: str) -> dict[str, str]:
    text = run.data.tags.get(key, "{}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"run {run.info.run_id}: tag {key} is not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise ReportError(f"run {run.info.run_id}: tag {key} must be a JSON object, got {text!r}")
    return {str(k): str(v) for k, v in value.items()}


def _how_to_run(study: str) -> str:
    return f"run the study first: python -m xent_lab.train experiment={study}"


def _experiment_id(client: MlflowClient, uri: str, name: str, study: str) -> str:
    try:
        experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise TrackingError(f"cannot read the MLflow store {tracking.redact(uri)}: {exc}") from None
    if experiment is None or experiment.lifecycle_stage != "active":
        raise ReportError(
            f"no MLflow experiment named {name!r} in {tracking.redact(uri)} (searched for study {study!r}); "
            f"{_how_to_run(study)}, or pass --experiment / --tracking-uri"
        )
    return experiment.experiment_id


def _study_runs(client: MlflowClient, experiment_id: str, study: str) -> list[Run]:
    """Every active run of the experiment tagged with the study, newest first, over all result pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            # Backticks: the tag key contains a dot.
            filter_string=f"tags.`{tags.STUDY}` = '{study}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE_SIZE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _select_parent(runs: Sequence[Run], parent_run_id: str | None, study: str, experiment: str) -> Run:
    """The requested parent run, else the one that started last."""
    parents = [run for run in runs if run.data.tags.get(tags.ROLE) == tags.ROLE_PARENT]
    searched = f"searched runs tagged {tags.STUDY}={study}, {tags.ROLE}={tags.ROLE_PARENT}"
    if parent_run_id is not None:
        for run in parents:
            if run.info.run_id == parent_run_id:
                return run
        raise ReportError(
            f"run {parent_run_id} is not a parent run of study {study!r} in experiment {experiment!r} ({searched})"
        )
    if not parents:
        raise ReportError(
            f"no parent run of study {study!r} in experiment {experiment!r} ({searched}); {_how_to_run(study)}"
        )
    return max(parents, key=lambda run: run.info.start_time)


def _launch_jobs(parent: Run, runs: Sequence[Run]) -> tuple[list[Job], list[str]]:
    """The parent's own children and the runs its xent.reused.* tags name; also the reused ids not found."""
    parent_id = parent.info.run_id
    by_id = {run.info.run_id: run for run in runs}
    jobs = [
        Job(run, reused=False)
        for run in runs
        if run.data.tags.get(tags.PARENT_RUN_ID) == parent_id and run.data.tags.get(tags.ROLE) == tags.ROLE_CHILD
    ]
    reused_ids = [value for key, value in parent.data.tags.items() if key.startswith(tags.REUSED_PREFIX)]
    jobs += [Job(by_id[run_id], reused=True) for run_id in reused_ids if run_id in by_id]
    return jobs, sorted(run_id for run_id in reused_ids if run_id not in by_id)


def load_launch(
    study: str, tracking_uri: str | None = None, experiment: str | None = None, parent_run_id: str | None = None
) -> tuple[MlflowClient, Launch]:
    """The client and the launch the report describes (see the package docstring for the tags used)."""
    if not STUDY_NAME.fullmatch(study):
        raise ReportError(f"invalid study name {study!r}: use letters, digits, '_', '-' and '.' (not first)")
    uri = tracking.resolve_uri(tracking_uri)
    client = open_existing(uri, timeout=5)
    name = experiment or study
    runs = _study_runs(client, _experiment_id(client, uri, name, study), study)
    parent = _select_parent(runs, parent_run_id, study, name)
    jobs, missing = _launch_jobs(parent, runs)
    return client, Launch(study, name, parent, tuple(jobs), tuple(missing))


def group_jobs(jobs: Iterable[Job]) -> Groups:
    """Jobs by dataset, variant and implementation (the rows of the results tables), each run as its
    `evaluations`."""
    groups: Groups = {}
    views = [view for job in jobs for view in evaluations(job)]
    for job in sorted(views, key=lambda job: (job.dataset, job.variant, job.impl)):
        groups.setdefault(job.dataset, {}).setdefault(job.variant, {}).setdefault(job.impl, []).append(job)
    return groups


def job_predictions(client: MlflowClient, job: Job, folder: Path) -> calibration.Predictions | None:
    """The test predictions a finished job logged (the last epoch's for that evaluation), downloaded under
    `folder`; None when it logged none.

    The artifact is listed first: downloading a missing one raises."""
    if not job.finished:
        return None
    artifact = job.predictions_artifact
    listed = client.list_artifacts(job.run_id, artifact.rsplit("/", 1)[0])
    if not any(item.path == artifact for item in listed):
        return None
    path = client.download_artifacts(job.run_id, artifact, str(folder / job.run_id))
    return calibration.load_predictions(path)

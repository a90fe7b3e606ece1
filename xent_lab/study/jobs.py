"""A study's jobs: what the launch tells them (study.json), the config hash, the run name, reuse of finished
runs, the FAILED record of a job that failed before its run existed, and the FAILED file of any failed job.

Each job, in whatever process a launcher put it, reads the launch's `study.json` from the sweep
folder (`job_context`), skips itself when a finished run of the study has the same identity (so a
re-launched study resumes), and otherwise tags its run as a child of the launch's parent run.

A job's identity (`reusable_run`): its config hash, the digests of its data (`xent.data_digest`, the
datasets' digests of `xent_lab.tracking.lineage`) and the commit of the code (`git_commit`). A run from before
the data digest tag is judged by the source files' sha256 it carries (`data_sha256.*`), which with the same
config hash give the same digests. Another commit's run is reused only with `study.reuse_across_commits=true`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xent_lab import atomic
from xent_lab.errors import TrackingError
from xent_lab.tracking import lineage, resolve_uri
from xent_lab.tracking import tags as T
from xent_lab.tracking.lock import patiently

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDY_FILE = "study.json"
# In a job's output folder: why the job failed. The launch counts them, so that a plain sweep (no study, no
# parent run to search) whose jobs failed does not exit 0, whatever process a launcher ran them in.
FAILED_FILE = "FAILED"
# Keys that do not change what is trained: where files live, how much is printed, where it is logged.
_UNHASHED = ("tracking", "study", "dataset.data_dir", "dataset.cache_dir", "dataset.download", "trainer.verbose")


@dataclass(frozen=True)
class StudyLaunch:
    """What the launching process tells its jobs (the contents of study.json)."""

    study: str
    parent_run_id: str
    tracking_uri: str  # where the parent run is, password redacted: jobs connect with their own config's URI
    experiment: str
    sweep: dict[str, str]  # swept key -> its values as written, e.g. {"loss": "cce,bce"}


@dataclass(frozen=True)
class JobContext:
    """One job of a study launch."""

    launch: StudyLaunch
    config_hash: str
    overrides: dict[str, str]  # this job's value of each swept key
    data_digest: str | None = None  # `lineage.data_digest` of its data, once loaded (`on_data`)

    def on_data(self, checksums: Mapping[str, str], shaping: Mapping[str, Any]) -> JobContext:
        """This job once its data is loaded: `checksums` (source file -> sha256) and the shaping settings."""
        return replace(self, data_digest=lineage.data_digest(checksums, shaping))

    def run_name(self, dataset: str, seed: int) -> str:
        """E.g. `mnist-focal_flsd53-custom-s0`, `mnist-cce-class_weight=balanced-s1`: the swept values, in order."""
        parts = [
            value if key in ("loss", "loss.impl") else f"{key.rsplit('.', 1)[-1]}={value}"
            for key, value in self.overrides.items()
            if key != "seed"
        ]
        return "-".join([dataset, *parts, f"s{seed}"])

    def tags(self) -> dict[str, str]:
        return {
            T.PARENT_RUN_ID: self.launch.parent_run_id,
            T.STUDY: self.launch.study,
            T.ROLE: T.ROLE_CHILD,
            T.CONFIG_HASH: self.config_hash,
            T.JOB_OVERRIDES: json.dumps(self.overrides, sort_keys=True),
            **({T.DATA_DIGEST: self.data_digest} if self.data_digest is not None else {}),
        }


def run_name(cfg: DictConfig, job: JobContext | None) -> str:
    """The configured name; else, in a study, the swept values (presets like focal_flsd53 stay apart);
    else dataset-model-loss-impl-seed, e.g. `mnist-mlp-cce-builtin-s0`."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    if job is not None:
        return job.run_name(cfg.dataset.name, cfg.seed)
    return f"{cfg.dataset.name}-{cfg.model.name}-{cfg.loss.name}-{cfg.loss.impl}-s{cfg.seed}"


def config_hash(cfg: DictConfig) -> str:
    """sha256 of the resolved config minus the keys that do not change the result (`_UNHASHED`)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for dotted in _UNHASHED:
        *parents, leaf = dotted.split(".")
        node = container
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def _parse(overrides: list[str]) -> list[Any]:
    return OverridesParser.create().parse_overrides(overrides)


def sweep_of(config: DictConfig) -> dict[str, str]:
    """The swept keys of a multirun: `hydra.sweeper.params` plus command-line overrides with several values."""
    sweep = {str(key): str(value) for key, value in (config.hydra.sweeper.get("params") or {}).items()}
    for override in _parse(list(config.hydra.overrides.task)):
        # A command-line value replaces the study's for that key, a single value included.
        if override.is_sweep_override() or override.get_key_element() in sweep:
            sweep[override.get_key_element()] = override.get_value_string()
    return sweep


def is_published(config: DictConfig) -> bool:
    """Whether the launch is the study exactly as its file defines it (no command-line changes).

    Only such a launch writes the committed report in experiments/ (`published_report_dir`) by default.
    """
    return all(override.startswith("experiment=") for override in config.hydra.overrides.task)


def published_report_dir(study: str) -> Path:
    """experiments/<study> in the repository: the committed report's folder."""
    return REPO_ROOT / "experiments" / study


def job_context(cfg: DictConfig) -> JobContext | None:
    """The study launch this job belongs to, or None for a single run or an unnamed sweep."""
    if not cfg.study.name or not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    path = Path(hydra_cfg.sweep.dir) / STUDY_FILE
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    if not path.exists():  # never train a study's job outside its study
        raise TrackingError(
            f"job of study {cfg.study.name} found no {STUDY_FILE} in {hydra_cfg.sweep.dir}: its launch did not "
            "open the study (see the launch's error); launch the study again"
        )
    launch = StudyLaunch(**json.loads(path.read_text()))
    overrides = {
        override.get_key_element(): override.get_value_string()
        for override in _parse(list(hydra_cfg.overrides.task))
        if override.get_key_element() in launch.sweep
    }
    return JobContext(launch, config_hash(cfg), overrides)


def _data_digest(run: Run, shaping: Mapping[str, Any]) -> str | None:
    """The run's `xent.data_digest`; for a run from before that tag, the digest its `data_sha256.*` tags give
    with `shaping` (the same as the job's: the config hashes are equal); None when it has neither."""
    if T.DATA_DIGEST in run.data.tags:
        return run.data.tags[T.DATA_DIGEST]
    checksums = {
        key.removeprefix(T.DATA_SHA256_PREFIX): value
        for key, value in run.data.tags.items()
        if key.startswith(T.DATA_SHA256_PREFIX)
    }
    return lineage.data_digest(checksums, shaping) if checksums else None


def reusable_run(
    client: MlflowClient,
    experiment_id: str,
    job: JobContext,
    shaping: Mapping[str, Any],
    commit: str,
    across_commits: bool,
) -> tuple[Run | None, str | None]:
    """The latest FINISHED run of the job's study with its identity (config hash, data digest, and `commit`
    unless `across_commits`), else None and why the latest run with the same config hash was not taken."""
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{T.STUDY}` = '{job.launch.study}' and tags.`{T.CONFIG_HASH}` = '{job.config_hash}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    why_not = None
    for run in found:
        data, trained_at = _data_digest(run, shaping), run.data.tags.get(T.GIT_COMMIT, "unknown")
        if data != job.data_digest:
            why = f"other data (data digest {data or 'not recorded'}, this job's {job.data_digest})"
        elif trained_at != commit and not across_commits:
            why = f"commit {trained_at}, this job runs {commit}; study.reuse_across_commits=true would reuse it"
        else:
            return run, None
        why_not = why_not or f"finished run {run.info.run_id} has the same config but {why}"
    return None, why_not


def record_reuse(client: MlflowClient, job: JobContext, earlier: Run) -> None:
    """Record on the parent run that the job reuses `earlier` (`xent.reused.<config hash>`)."""
    client.set_tag(job.launch.parent_run_id, f"{T.REUSED_PREFIX}{job.config_hash}", earlier.info.run_id)


def record_failure(cfg: DictConfig, reason: str) -> None:
    """Give a study job that failed before its run existed (bad data, bad config) a FAILED child run.

    So that the report lists it like any other failed job. Does nothing outside a study, or when the
    job already has a run under this launch (that run was ended FAILED with the reason already).
    """
    try:
        job = job_context(cfg)
    except Exception:  # an unresolvable config: no hash to file it under
        return
    if job is None:
        return
    uri = resolve_uri(cfg.tracking.uri)
    # Jobs often fail together (a stop signal, a store locked at their start): wait for the lock like every write.
    patiently(_file_failure, MlflowClient(uri), job, cfg, reason, uri=uri, timeout_s=cfg.tracking.lock_timeout_s)


def _file_failure(client: MlflowClient, job: JobContext, cfg: DictConfig, reason: str) -> None:
    parent = client.get_run(job.launch.parent_run_id)
    existing = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`{T.PARENT_RUN_ID}` = '{job.launch.parent_run_id}' and tags.`{T.CONFIG_HASH}` = '{job.config_hash}'"
        ),
        max_results=1,
    )
    if existing:
        return
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"{job.run_name(cfg.dataset.name, cfg.seed)} (failed before training)",
        tags={**job.tags(), T.FAILURE_REASON: reason[:5000]},
    )
    client.set_terminated(run.info.run_id, "FAILED")


def mark_failed(output_dir: Path, reason: str) -> None:
    """Leave `FAILED_FILE` with the (scrubbed) reason in the job's output folder."""
    atomic.write_text(output_dir / FAILED_FILE, reason + "\n")


def clear_failed(output_dir: Path) -> None:
    """A job that runs again in the same folder starts without its earlier failure."""
    (output_dir / FAILED_FILE).unlink(missing_ok=True)


def failed_jobs(sweep_dir: Path) -> list[Path]:
    """The output folders of the sweep's jobs that failed."""
    return sorted(path.parent for path in sweep_dir.rglob(FAILED_FILE))

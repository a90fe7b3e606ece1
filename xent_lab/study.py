"""Studies: Hydra sweeps grouped in MLflow as one parent run with one child run per job.

The launching process (a Hydra callback, registered in conf/config.yaml) prepares the tracking store
before any job starts, so parallel jobs never race to create it; for a named study (`study.name`,
set by the files in experiments/) it also opens the parent run and writes `study.json` into the
sweep folder. Each job, in whatever process a launcher put it, reads that file (`job_context`),
skips itself when a finished run of the study has the same config hash (so a re-launched study
resumes), and otherwise tags its run as a child. When the sweep ends the callback builds the
report and ends the parent run; if the launch dies first, an exit hook ends it as KILLED.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import shlex
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xent_lab import tracking
from xent_lab.errors import TrackingError, XentError

STUDY_FILE = "study.json"
# Keys that do not change what is trained: where files live, how much is printed, where it is logged.
_UNHASHED = ("tracking", "study", "dataset.data_dir", "dataset.cache_dir", "dataset.download", "trainer.verbose")


@dataclass(frozen=True)
class StudyLaunch:
    """What the launching process tells its jobs (the contents of study.json)."""

    study: str
    parent_run_id: str
    tracking_uri: str
    experiment: str
    sweep: dict[str, str]  # swept key -> its values as written, e.g. {"loss": "cce,bce"}


@dataclass(frozen=True)
class JobContext:
    """One job of a study launch."""

    launch: StudyLaunch
    config_hash: str
    overrides: dict[str, str]  # this job's value of each swept key

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
            "mlflow.parentRunId": self.launch.parent_run_id,
            "xent.study": self.launch.study,
            "xent.role": "child",
            "xent.config_hash": self.config_hash,
            "xent.job_overrides": json.dumps(self.overrides, sort_keys=True),
        }


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

    Only such a launch writes the committed report in experiments/; see `report.default_out_dir`.
    """
    return all(override.startswith("experiment=") for override in config.hydra.overrides.task)


def job_context(cfg: DictConfig) -> JobContext | None:
    """The study launch this job belongs to, or None for a single run or an unnamed sweep."""
    if not cfg.study.name or not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    path = Path(hydra_cfg.sweep.dir) / STUDY_FILE
    if hydra_cfg.mode != RunMode.MULTIRUN or not path.exists():
        return None
    launch = StudyLaunch(**json.loads(path.read_text()))
    overrides = {
        override.get_key_element(): override.get_value_string()
        for override in _parse(list(hydra_cfg.overrides.task))
        if override.get_key_element() in launch.sweep
    }
    return JobContext(launch, config_hash(cfg), overrides)


def finished_run(client: MlflowClient, experiment_id: str, study: str, digest: str) -> Run | None:
    """The latest FINISHED run of `study` whose config hash is `digest`, if any."""
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`xent.study` = '{study}' and tags.`xent.config_hash` = '{digest}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def reuse_finished(client: MlflowClient, experiment_id: str, job: JobContext) -> Run | None:
    """If an earlier finished run has this job's config, record it on the parent run and return it."""
    earlier = finished_run(client, experiment_id, job.launch.study, job.config_hash)
    if earlier is not None:
        client.set_tag(job.launch.parent_run_id, f"xent.reused.{job.config_hash}", earlier.info.run_id)
    return earlier


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
    client = MlflowClient(job.launch.tracking_uri)
    parent = client.get_run(job.launch.parent_run_id)
    existing = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{job.launch.parent_run_id}' "
            f"and tags.`xent.config_hash` = '{job.config_hash}'"
        ),
        max_results=1,
    )
    if existing:
        return
    run = client.create_run(
        parent.info.experiment_id, run_name=f"{job.run_name(cfg.dataset.name, cfg.seed)} (failed before training)",
        tags={**job.tags(), tracking.FAILURE_TAG: reason[:5000]},
    )
    client.set_terminated(run.info.run_id, "FAILED")


def _cpu_description() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class StudyCallback(Callback):
    """Hydra callback: store set-up before a sweep; for a named study, the parent run and the report."""

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.launch: StudyLaunch | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exceptions into warnings and launches the jobs anyway; a sweep that
        # cannot be tracked should stop here instead, with the reason.
        try:
            self._start(config)
        except XentError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)

    def _start(self, config: DictConfig) -> None:
        uri = tracking.resolve_uri(config.tracking.uri)
        tracking.scrub_logs(uri)
        tracking.check_reachable(uri, config.tracking.connect_timeout)
        tracker = tracking.Tracker(uri, config.tracking.experiment)
        try:
            experiment_id = tracker.experiment_id()  # creates the store and experiment once, before the jobs
            if config.study.name:
                self._open_parent(config, tracker.client, experiment_id, uri)
        except XentError:
            raise
        except Exception as exc:
            raise TrackingError(f"cannot prepare the MLflow store {tracking.redact(uri)}: {exc}") from exc

    def _open_parent(self, config: DictConfig, client: MlflowClient, experiment_id: str, uri: str) -> None:
        sweep = sweep_of(config)
        parent = client.create_run(
            experiment_id,
            run_name=f"{config.study.name} (study)",
            tags={
                "xent.study": config.study.name,
                "xent.role": "parent",
                "xent.sweep": tracking.scrub(json.dumps(sweep, sort_keys=True), uri),
                "xent.command": tracking.scrub(shlex.join(["python", "-m", "xent_lab.train", *sys.argv[1:]]), uri),
                "xent.published": str(is_published(config)).lower(),
                "xent.launch_host": f"{socket.gethostname()}: {_cpu_description()}, {os.cpu_count()} CPU cores",
                "git_commit": tracking.git_commit(),
            },
        )
        self.client = client
        self.launch = StudyLaunch(config.study.name, parent.info.run_id, uri, config.tracking.experiment, sweep)
        atexit.register(self._end_parent, "KILLED", "the launch stopped before the sweep ended")
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / STUDY_FILE).write_text(json.dumps(asdict(self.launch), indent=2))
        client.set_tag(parent.info.run_id, "xent.sweep_dir", str(sweep_dir.resolve()))
        print(f"study {config.study.name}: parent run {parent.info.run_id} in {tracking.redact(uri)}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.launch is None or self.client is None:
            return
        from xent_lab import report  # matplotlib and report code are needed only here

        children = self.client.search_runs(
            [self.client.get_run(self.launch.parent_run_id).info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.launch.parent_run_id}'",
            max_results=10000,
        )
        failed = [run for run in children if run.info.status != "FINISHED"]
        reused = [k for k in self.client.get_run(self.launch.parent_run_id).data.tags if k.startswith("xent.reused.")]
        self.client.set_tag(self.launch.parent_run_id, "xent.failed_jobs", str(len(failed)))
        lines = [f"study {self.launch.study}: {len(children)} jobs run ({len(failed)} failed), {len(reused)} reused from earlier launches"]
        if config.study.report:
            try:
                path = report.build_report(
                    self.launch.study, self.launch.tracking_uri, self.launch.experiment, self.launch.parent_run_id,
                    Path(config.study.report_dir) if config.study.report_dir else None,
                )
            except Exception as exc:
                self._end_parent("FAILED", f"the report could not be built: {type(exc).__name__}: {exc}")
                raise
            lines.append(f"report: {path}")
        self._end_parent("FINISHED", None)
        print("\n".join(lines), flush=True)
        if failed:
            print(f"{len(failed)} job(s) failed; the report lists why", file=sys.stderr, flush=True)
            sys.exit(1)

    def _end_parent(self, status: str, reason: str | None) -> None:
        """End the parent run once; later calls (the exit hook after a normal end) do nothing."""
        if self.launch is None or self.client is None:
            return
        run_id, self.launch = self.launch.parent_run_id, None
        if reason is not None:
            self.client.set_tag(run_id, tracking.FAILURE_TAG, reason)
        self.client.set_terminated(run_id, status)

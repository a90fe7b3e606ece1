"""The Hydra callback of every sweep: store set-up before the jobs; for a named study, the parent run,
`study.json`, and the report when the sweep ends.

The launching process prepares the tracking store before any job starts, so parallel jobs never race
to create it. For a named study (`study.name`, set by the files in experiments/) it also opens the
parent run and writes `study.json` into the sweep folder (see `xent_lab.study.jobs`, what each job does). When the sweep
ends it builds the report and ends the parent run; if the launch dies first, an exit hook ends it KILLED.
"""

from __future__ import annotations

import atexit
import functools
import json
import multiprocessing
import os
import platform
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xent_lab import atomic, stopping
from xent_lab.config import check_added_keys, check_output_dir
from xent_lab.errors import TrackingError, XentError
from xent_lab.study.jobs import (
    FAILED_FILE,
    STUDY_FILE,
    StudyLaunch,
    failed_jobs,
    is_published,
    job_context,
    run_name,
    sweep_of,
)
from xent_lab.study.sources import file_digests, record_config_files, source_dirs
from xent_lab.sweep import pool
from xent_lab.sweep.launch import (
    check_report_dir,
    groups,
    launched_by_submitit,
    report_dir,
    scrub_hydra_files,
    validate_launch,
)
from xent_lab.sweep.progress import Progress, sweep_size
from xent_lab.sweep.slurm import make_launches_stoppable
from xent_lab.tracking import Tracker, check_reachable, git_commit, redact, resolve_uri, scrub, scrub_logs
from xent_lab.tracking import tags as T
from xent_lab.tracking.lock import patiently
from xent_lab.tracking.runs import close_stale, process_tags


def _cpu_description() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _or_exit(step: Callable[[], None]) -> None:
    """Run a launch step; any error is printed as one line and ends the launch with status 2 (no job runs)."""
    try:
        step()
    except XentError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:  # e.g. OmegaConf's on a config it cannot compose: still no job outside the study
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: the launch could not start: {type(exc).__name__}: {detail}", file=sys.stderr, flush=True)
        sys.exit(2)


class StudyCallback(Callback):
    """Hydra callback: store set-up before a sweep; for a named study, the parent run and the report."""

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.uri = ""  # the launch's tracking URI, password included: never written to a file
        self.launch: StudyLaunch | None = None
        self.progress: Progress | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A single run: a `+key` typo, or a folder it cannot write, stops it before Hydra creates its output folder.
        _or_exit(lambda: check_added_keys(config, list(config.hydra.overrides.task), groups(config)))
        _or_exit(lambda: check_output_dir(Path(str(config.hydra.run.dir)), "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exceptions into warnings and launches the jobs anyway; a sweep that
        # is invalid or cannot be tracked stops here instead, with the reason, before anything exists.
        _or_exit(lambda: self._start(config))

    def _start(self, config: DictConfig) -> None:
        files = file_digests(source_dirs(config.hydra))  # before validating: the files the launch checks
        validate_launch(config)
        check_output_dir(Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")
        check_report_dir(config)
        uri = resolve_uri(config.tracking.uri)
        scrub_logs(uri)
        check_reachable(uri, config.tracking.connect_timeout)
        try:
            tracker = Tracker(uri, config.tracking.experiment, config.tracking.lock_timeout_s)
            experiment_id = tracker.experiment_id()  # creates the store and experiment once, before the jobs
            self._guard_launch(config, tracker.client)
            if config.study.name:
                self._open_parent(config, tracker, experiment_id)
        except XentError:
            raise
        except Exception as exc:
            raise TrackingError(f"cannot prepare the MLflow store {redact(uri)}: {exc}") from exc
        # The jobs compose their configs from the files later: each checks they are still these.
        record_config_files(files, Path(str(config.hydra.sweep.dir)))

    def _open_parent(self, config: DictConfig, tracker: Tracker, experiment_id: str) -> None:
        uri, client = tracker.uri, tracker.client
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:  # the launch's own folder (see xent_lab.sweep.launch), made before the parent run
            sweep_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise XentError(
                f"the sweep folder {sweep_dir} exists already (another launch made it); launch again"
            ) from None
        sweep = sweep_of(config)
        tags = {
            T.STUDY: config.study.name,
            T.ROLE: T.ROLE_PARENT,
            T.SWEEP: scrub(json.dumps(sweep, sort_keys=True), uri),
            # The launch's own: a reused run carries the questions of the launch that trained it.
            T.QUESTIONS: str(OmegaConf.to_container(config.study.questions, resolve=True)),
            T.COMMAND: scrub(shlex.join(["python", "-m", "xent_lab.train", *sys.argv[1:]]), uri),
            T.PUBLISHED: str(is_published(config)).lower(),
            T.LAUNCH_HOST: f"{socket.gethostname()}: {_cpu_description()}, {os.cpu_count()} CPU cores",
            T.GIT_COMMIT: git_commit(),
            T.SWEEP_DIR: str(sweep_dir.resolve()),
            **process_tags(),
        }
        create = functools.partial(client.create_run, experiment_id, run_name=f"{config.study.name} (study)", tags=tags)
        parent = patiently(create, uri=uri, timeout_s=tracker.lock_timeout_s)
        self.client, self.uri = client, uri
        # study.json is read by every job; the password stays in the launch's memory and the jobs' own config.
        self.launch = StudyLaunch(config.study.name, parent.info.run_id, redact(uri), config.tracking.experiment, sweep)
        self.progress = Progress(sweep_size(sweep))
        atexit.register(self._end_parent, "KILLED", "the launch stopped before the sweep ended")
        atomic.write_text(sweep_dir / STUDY_FILE, json.dumps(asdict(self.launch), indent=2))
        print(f"study {config.study.name}: parent run {parent.info.run_id} in {redact(uri)}", flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = resolve_uri(config.tracking.uri)
        scrub_logs(uri)  # the job's log handlers exist now
        scrub_hydra_files(config, uri)  # Hydra has just written them
        if self.progress is not None and self.progress.reports_here():
            self.progress.start_job()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Print the study's progress and keep it as the parent run's tag (see `xent_lab.sweep.progress`)."""
        if self.progress is None or not self.progress.reports_here() or self.launch is None or self.client is None:
            return
        job = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])  # as the task saw it
        line = self.progress.finish_job(run_name(job, job_context(job)))
        print(line, flush=True)
        try:
            self.client.set_tag(self.launch.parent_run_id, T.PROGRESS, line)
        except Exception as exc:  # a lost server: the jobs record their runs themselves, the tag is only a view
            print(f"warning: the study's progress tag could not be set ({type(exc).__name__})", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if stopping.requested() is not None:
            self._end_stopped()
        if self.launch is None or self.client is None:
            if pool.broken() is not None:
                print(
                    f"error: {pool.broken()}: the sweep's running jobs were killed with it and the rest never ran; "
                    "end their runs with `xent-runs close-stale`",
                    file=sys.stderr,
                    flush=True,
                )
                sys.exit(1)
            self._exit_if_jobs_failed(Path(str(config.hydra.sweep.dir)))
            return
        broken = self._close_orphans()
        children = self.client.search_runs(
            [self.client.get_run(self.launch.parent_run_id).info.experiment_id],
            filter_string=f"tags.`{T.PARENT_RUN_ID}` = '{self.launch.parent_run_id}'",
            max_results=10000,
        )
        scrub_hydra_files(config, self.uri)  # multirun.yaml, if no job ran in this process
        failed = [run for run in children if run.info.status != "FINISHED"]
        reused = [k for k in self.client.get_run(self.launch.parent_run_id).data.tags if k.startswith(T.REUSED_PREFIX)]
        self.client.set_tag(self.launch.parent_run_id, T.FAILED_JOBS, str(len(failed)))
        lines = [
            f"study {self.launch.study}: {len(children)} jobs run ({len(failed)} failed), "
            f"{len(reused)} reused from earlier launches"
        ]
        errors = [self._broken_pool(broken, children, len(reused))] if broken is not None else []
        report_error = self._report(config, lines) if config.study.report else None
        if stopping.requested() is not None:  # came while the report was written: it is whole, the launch stops
            self._end_stopped()
        errors += [report_error] if report_error is not None else []
        self._end_parent("FAILED" if errors else "FINISHED", "; ".join(errors) or None)
        print("\n".join(lines), flush=True)
        if failed:
            print(f"{len(failed)} job(s) failed; the report lists why", file=sys.stderr, flush=True)
        for error in errors:
            print(f"error: {error}", file=sys.stderr, flush=True)
        if not children and not reused:  # e.g. jobs that died before they could record a run
            print("no job of the study finished", file=sys.stderr, flush=True)
        if failed or errors or (not children and not reused):
            sys.exit(1)

    def _close_orphans(self) -> dict[str, str] | None:
        """After the joblib pool broke (`xent_lab.sweep.pool`): end KILLED the study's runs whose process is gone,
        those of the jobs killed with it. Their run id -> reason; None when the pool did not break."""
        if pool.broken() is None or self.launch is None or self.client is None:
            return None
        multiprocessing.active_children()  # reaps the killed workers: a zombie's pid would still look alive
        return close_stale(self.client, study=self.launch.study)

    def _broken_pool(self, closed: dict[str, str], children: list[Any], reused: int) -> str:
        """The one line on a broken pool: the jobs it killed and how many never ran (also `xent.not_run_jobs`)."""
        assert self.launch is not None and self.client is not None and self.progress is not None
        killed = sorted(run.info.run_name for run in children if run.info.run_id in closed)
        not_run = max(self.progress.total - len(children) - reused, 0)
        self.client.set_tag(self.launch.parent_run_id, T.NOT_RUN_JOBS, str(not_run))
        return (
            f"{pool.broken()}: {len(killed)} job(s) killed with it ({', '.join(killed) or 'none had a run'}), "
            f"{not_run} of {self.progress.total} not run; launch the study again to train them"
        )

    def _report(self, config: DictConfig, lines: list[str]) -> str | None:
        """Build the study's report (its path appended to `lines`); why it could not be built, or None.

        Raised here, an exception would reach Hydra, which warns and exits 0; the launch ends the parent FAILED
        instead. A stop signal before the report's files are written leaves them as they were and ends the launch
        (`_end_stopped`)."""
        assert self.launch is not None
        print(f"study {self.launch.study}: building the report", flush=True)  # seconds to a minute, said first
        from xent_lab import report  # matplotlib and report code are needed only here

        try:
            path = report.build_report(
                self.launch.study,
                self.uri,
                self.launch.experiment,
                self.launch.parent_run_id,
                report_dir(config),
                before_writing=stopping.check,
            )
        except stopping.Stopped:
            self._end_stopped()
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"the report could not be built: {type(exc).__name__}: {detail}"
        lines.append(f"report: {path}")
        return None

    @staticmethod
    def _exit_if_jobs_failed(sweep_dir: Path) -> None:
        """A plain sweep (no study): exit 1 when a job failed, naming the jobs' folders and the first reason."""
        failed = failed_jobs(sweep_dir)
        if failed:
            first = (failed[0] / FAILED_FILE).read_text().strip().splitlines()[0]
            print(
                f"{len(failed)} job(s) of the sweep failed ({', '.join(str(p) for p in failed)}); the first: {first}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)

    def _end_parent(self, status: str, reason: str | None) -> None:
        """End the parent run once; later calls (the exit hook after a normal end) do nothing."""
        if self.launch is None or self.client is None:
            return
        run_id, self.launch = self.launch.parent_run_id, None
        if reason is not None:
            self.client.set_tag(run_id, T.FAILURE_REASON, reason)
        self.client.set_terminated(run_id, status)

    # --- stop signals and runs left RUNNING: the launch's part
    def _guard_launch(self, config: DictConfig, client: MlflowClient) -> None:
        """Before the parent run: exit 130 if a stop signal came already; from now on pass stop signals to the
        pool workers (joblib's; the handler is `xent_lab.train`'s) or cancel the SLURM jobs; end KILLED this
        study's runs whose process died without ending them (`xent_lab.tracking.runs`), so that a relaunch
        leaves none RUNNING."""
        if stopping.requested() is not None:
            print(f"{stopping.reason()}: the launch stopped before any job ran", file=sys.stderr, flush=True)
            sys.exit(130)
        stopping.on_stop(stopping.forward_to_workers)
        if launched_by_submitit(config):
            make_launches_stoppable()  # a stop cancels the launch's SLURM jobs
        elif "joblib" in str(config.hydra.launcher.get("_target_", "")):
            pool.make_pool_failures_clean()  # a worker that dies ends the launch with one line, not a traceback
        if config.study.name:
            for run_id, reason in close_stale(client, study=config.study.name).items():
                print(f"closed run {run_id} of an earlier launch as KILLED: {reason}", flush=True)

    def _end_stopped(self) -> None:
        """After a stop signal the jobs have ended (each run KILLED, the later jobs not started): end the parent run
        KILLED, with the reason and the count of jobs never run (`xent.not_run_jobs`), and exit 130."""
        if self.launch is not None and self.client is not None and self.progress is not None:
            parent = self.client.get_run(self.launch.parent_run_id)
            children = self.client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.`{T.PARENT_RUN_ID}` = '{parent.info.run_id}'",
                max_results=10000,
            )
            reused = sum(key.startswith(T.REUSED_PREFIX) for key in parent.data.tags)
            not_run = max(self.progress.total - len(children) - reused, 0)
            self.client.set_tag(parent.info.run_id, T.NOT_RUN_JOBS, str(not_run))
            self._end_parent("KILLED", f"{stopping.reason()}: {not_run} of {self.progress.total} jobs not run")
        print(f"{stopping.reason()}: the sweep stopped", file=sys.stderr, flush=True)
        sys.exit(130)

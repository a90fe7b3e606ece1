"""What a launch settles before anything exists: its own folder name, every job's config, no stray password.

- `${launch_id:}` (in conf/config.yaml and experiments/_study.yaml) gives each launching process its own
  output and sweep folder, so two launches in the same second never share one (and its `study.json`).
  Hydra resolves it once per launch and hands the value to the jobs with the config, in any process.
- `validate_launch` composes and checks every job of a sweep in the launching process, so that a bad value
  stops the launch before the store, an experiment, a parent run or a folder is created.
- `report_dir` is where a study's report goes, `check_report_dir` makes sure it can be written before any job.
- `scrub_hydra_files` rewrites the files Hydra wrote (`.hydra/*.yaml`, `multirun.yaml`) without the tracking
  password typed on the command line. A SLURM launch with such a password is refused (`validate_launch`):
  submitit pickles each job's config, and a pickle cannot be rewritten once the job has read it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from xent_lab import atomic, config
from xent_lab.errors import ConfigError, NotApplicable
from xent_lab.study import is_published, published_report_dir
from xent_lab.tracking import redact, scrub
from xent_lab.tracking.secrets import has_secret

LAUNCH_ID = secrets.token_hex(3)  # one per launching process; its jobs get it through the config
OmegaConf.register_new_resolver("launch_id", lambda: LAUNCH_ID, use_cache=True, replace=True)


def sweep_jobs(cfg: DictConfig) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper builds them: the study's sweep, then the command line."""
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *cfg.hydra.overrides.task])
    return BasicSweeper.split_arguments(parsed, None)[0]


def groups(cfg: DictConfig) -> set[str]:
    """The config groups chosen in `cfg` (`dataset`, `experiment`, `hydra/launcher`, ...)."""
    return set(cfg.hydra.runtime.choices)


def launched_by_submitit(cfg: DictConfig) -> bool:
    """Whether the launcher is hydra-submitit-launcher's (`hydra/launcher=slurm`, or its local variant)."""
    return "submitit" in str(cfg.hydra.launcher.get("_target_", ""))


def validate_launch(cfg: DictConfig) -> None:
    """Raise ConfigError for a swept value (or a fixed one) that makes a job's config invalid, naming the job.

    `cfg` is the launch's config (with its `hydra` node). A job that is only not applicable (FLSD-53 on the
    built-in focal loss) is fine here: the job skips itself.
    """
    config.check_added_keys(cfg, list(cfg.hydra.overrides.task), groups(cfg))
    _check_no_password_pickled(cfg)
    jobs = sweep_jobs(cfg)
    varying = {override for job in jobs for override in job if not all(override in other for other in jobs)}
    for overrides in _each_value_once(jobs):
        job = compose(config_name=cfg.hydra.job.config_name, overrides=overrides)
        try:
            config.validate(job)
        except NotApplicable:
            continue
        except ConfigError as exc:
            which = " ".join(o for o in overrides if o in varying) or "every job"
            raise ConfigError(f"{exc} (job {which}); nothing was started") from None


def report_dir(cfg: DictConfig) -> Path:
    """Where a study launch writes its report: `study.report_dir`, else experiments/NAME for the study as its file
    defines it, else `report/` in the sweep folder (a trial with command-line changes leaves the published one)."""
    if cfg.study.report_dir:
        return Path(cfg.study.report_dir)
    return published_report_dir(cfg.study.name) if is_published(cfg) else Path(str(cfg.hydra.sweep.dir)) / "report"


def check_report_dir(cfg: DictConfig) -> None:
    """Raise ConfigError when a study's report could not be written where it goes, before any job trains for it."""
    if cfg.study.name and cfg.study.report:
        config.check_output_dir(report_dir(cfg), "study.report_dir")


def _check_no_password_pickled(cfg: DictConfig) -> None:
    """Refuse a password in tracking.uri when the launcher is submitit's, which writes every job's config,
    the URI included, into its job files (`.submitit/*.pkl`)."""
    uri = cfg.tracking.uri
    if launched_by_submitit(cfg) and uri and has_secret(uri):
        raise ConfigError(
            f"tracking.uri={redact(uri)} holds a password, which a SLURM launch would write into its job files "
            "(.submitit/*.pkl). Leave it out of the URI and export it for the jobs to inherit: "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for a tracking server, PGPASSWORD or PGPASSFILE "
            "for PostgreSQL; nothing was started"
        )


def _each_value_once(jobs: list[list[str]]) -> list[list[str]]:
    """The first job, and for each swept value a job that differs from it in that value only.

    Every value is checked in a number of compositions that grows with the values, not their product (the 36
    jobs of mnist_losses are 9 here); a value wrong only in one combination is still caught by that job.
    """
    first = jobs[0]
    variants = {tuple(first[:i] + [job[i]] + first[i + 1 :]): None for job in jobs for i in range(len(first))}
    return [list(first), *(list(v) for v in variants if list(v) != first)]


def _hydra_files(cfg: DictConfig) -> Iterator[Path]:
    hydra = cfg.hydra
    output_dir = OmegaConf.select(hydra, "runtime.output_dir", default=None)  # not set at the sweep's end
    if output_dir is not None and hydra.output_subdir is not None:
        yield from (Path(output_dir) / hydra.output_subdir).glob("*.yaml")
    if str(hydra.mode) == "RunMode.MULTIRUN":
        yield Path(str(hydra.sweep.dir)) / "multirun.yaml"


def scrub_hydra_files(cfg: DictConfig, uri: str) -> None:
    """Replace the password of `uri` by *** in the files Hydra wrote for this job and its sweep."""
    for path in _hydra_files(cfg):
        if not path.is_file():
            continue
        text = path.read_text()
        clean = scrub(text, uri)
        if clean != text:
            atomic.write_text(path, clean)

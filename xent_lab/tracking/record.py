"""A run's local record: everything logged to MLflow, also written as files into the job's output folder.

Written as it is logged, before the MLflow call, so that when the tracking server goes away mid-run
nothing is lost: `python -m xent_lab.relog OUTPUT_DIR` later turns the record into one complete run.

Layout of `OUTPUT_DIR/mlflow_run/`:
  run.json       experiment, run name, tags, params, status, the MLflow run id it was logged as
  metrics.jsonl  one line per metric value: {"key", "value", "step", "timestamp"}
  inputs.json    the datasets the run read (xent_lab.tracking.lineage), as logged with log_inputs
  artifacts/     every artifact, at its artifact path
and `OUTPUT_DIR/checkpoint.keras`, the model saved after every epoch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from xent_lab import atomic
from xent_lab.errors import XentError

FOLDER = "mlflow_run"
CHECKPOINT = "checkpoint.keras"  # the model, saved after every epoch beside the record
INPUTS = "inputs.json"


@dataclass
class RunInfo:
    """The contents of run.json."""

    experiment: str
    run_name: str
    tracking_uri: str = ""  # where it was logged, password redacted
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    status: str = "RUNNING"
    run_id: str | None = None  # the MLflow run it was first logged as (maybe incomplete)
    complete_in_mlflow: bool = True  # false once an MLflow call failed
    relogged_as: str | None = None  # set by `xent_lab.relog`


class LocalRecord:
    """Writes one run's record under `output_dir/mlflow_run`."""

    def __init__(self, output_dir: Path, info: RunInfo) -> None:
        self.folder = Path(output_dir) / FOLDER
        (self.folder / "artifacts").mkdir(parents=True, exist_ok=True)
        self.info = info
        self._save()

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    def _save(self) -> None:
        save_info(self.folder, self.info)

    def update(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.info, key, value)
        self._save()

    def params(self, params: Mapping[str, str]) -> None:
        self.info.params.update(params)
        self._save()

    def tags(self, tags: Mapping[str, str]) -> None:
        self.info.tags.update({key: str(value) for key, value in tags.items()})
        self._save()

    def inputs(self, inputs: Sequence[Mapping[str, str]]) -> None:
        atomic.write_text(self.folder / INPUTS, json.dumps([dict(entry) for entry in inputs], indent=2))

    def metrics(self, metrics: Mapping[str, float], step: int, timestamp: int) -> None:
        with open(self.folder / "metrics.jsonl", "a") as out:
            for key, value in metrics.items():
                out.write(json.dumps({"key": key, "value": float(value), "step": step, "timestamp": timestamp}) + "\n")

    def _target(self, artifact_file: str) -> Path:
        target = self.artifacts / artifact_file
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def text(self, text: str, artifact_file: str) -> None:
        self._target(artifact_file).write_text(text)

    def figure(self, figure: Figure, artifact_file: str) -> Path:
        """Render `figure` into the record; returns the file, which the MLflow upload then reuses."""
        target = self._target(artifact_file)
        figure.savefig(target)
        return target

    def file(self, path: Path, artifact_path: str | None) -> None:
        shutil.copy2(path, self._target(f"{artifact_path}/{Path(path).name}" if artifact_path else Path(path).name))


def save_info(folder: Path, info: RunInfo) -> None:
    """Write run.json; replaced, not rewritten in place, so a crash never leaves it truncated."""
    atomic.write_text(folder / "run.json", json.dumps(asdict(info), indent=2))


@dataclass(frozen=True)
class RecordedRun:
    """A record read back: run.json's fields, the metric values, and the artifacts folder."""

    folder: Path
    info: RunInfo
    metrics: list[dict]
    inputs: list[dict] = field(default_factory=list)  # none in records written before inputs were logged

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"


def _metric_lines(lines: list[str]) -> list[dict]:
    metrics = []
    for number, line in enumerate(lines, 1):
        try:
            metrics.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # the last line, cut off by a crash mid-write: the values before it stand
                break
            raise
    return metrics


def load(output_dir: Path) -> RecordedRun:
    """Read the record of the job that wrote `output_dir` (its Hydra output folder, or the record folder)."""
    output_dir = Path(output_dir)
    folder = output_dir if (output_dir / "run.json").exists() else output_dir / FOLDER
    if not (folder / "run.json").exists():
        raise XentError(
            f"no run record in {output_dir}: pass the output folder of a training job "
            f"(outputs/DATE/TIME, or multirun/.../N), the one that holds {FOLDER}/run.json"
        )
    try:
        info = RunInfo(**json.loads((folder / "run.json").read_text()))
        lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").exists() else []
        metrics = _metric_lines(lines)
        inputs = json.loads((folder / INPUTS).read_text()) if (folder / INPUTS).exists() else []
    except (ValueError, TypeError) as exc:
        raise XentError(f"the run record in {folder} is damaged ({exc}); it cannot be re-logged") from exc
    return RecordedRun(folder, info, metrics, inputs)

"""A run's local record: everything logged to MLflow, also written as files into the job's output folder.

Written as it is logged, before the MLflow call, so that when the tracking server goes away mid-run
nothing is lost: `python -m xent_lab.relog OUTPUT_DIR` later turns the record into one complete run.

Layout of `OUTPUT_DIR/mlflow_run/`:
  run.json       experiment, run name, tags, params, status, the MLflow run id it was logged as
  metrics.jsonl  one line per metric value: {"key", "value", "step", "timestamp"}
  inputs.json    the datasets the run read (xent_lab.tracking.lineage), as logged with log_inputs
  artifacts/     every artifact, at its artifact path
and `OUTPUT_DIR/checkpoint.keras`, the model saved after every epoch.

`Contents` is what is written to a run at once: the record takes it first (`LocalRecord.add`), then MLflow
(`RunLogger.upload`); relog uploads a whole record's `RecordedRun.contents()` through the same call.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from xent_lab import atomic
from xent_lab.errors import XentError

FOLDER = "mlflow_run"
CHECKPOINT = "checkpoint.keras"  # the model, saved after every epoch beside the record
INPUTS = "inputs.json"
# What a Keras 3 model file (a zip archive) always holds; relog checks the checkpoint for them (no Keras there).
CHECKPOINT_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")


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


@dataclass
class Contents:
    """Part of a run, or all of it: params, tags, inputs (dataset fields and context), metric values
    ({"key", "value", "step", "timestamp"}) and files to upload, each with its artifact folder (None: the top)."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    files: list[tuple[Path, str | None]] = field(default_factory=list)


def metric_values(metrics: Mapping[str, float], step: int, timestamp: int) -> list[dict]:
    """`metrics` as recorded metric values."""
    return [{"key": key, "value": float(value), "step": step, "timestamp": timestamp} for key, value in metrics.items()]


def artifact_folder(artifact_file: str) -> str | None:
    """The artifact folder of `artifact_file` (a path under a run's artifacts); None at the top."""
    folder = str(Path(artifact_file).parent)
    return None if folder == "." else folder


class LocalRecord:
    """Writes one run's record under `output_dir/mlflow_run`."""

    def __init__(self, output_dir: Path, info: RunInfo) -> None:
        self.folder = Path(output_dir) / FOLDER
        self.info = info
        with self._writing():
            (self.folder / "artifacts").mkdir(parents=True, exist_ok=True)
            self._save()

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    def _save(self) -> None:
        save_info(self.folder, self.info)

    def update(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.info, key, value)
        with self._writing():
            self._save()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (a full disk) as one line that names the record, not an OSError deep in a callback."""
        try:
            yield
        except OSError as exc:
            raise RecordError(f"cannot write the run record in {self.folder}: {reason(exc)}") from exc

    def params(self, params: Mapping[str, str]) -> None:
        self.info.params.update(params)
        self._save()

    def tags(self, tags: Mapping[str, str]) -> None:
        self.info.tags.update({key: str(value) for key, value in tags.items()})
        self._save()

    def inputs(self, inputs: Sequence[Mapping[str, str]]) -> None:
        atomic.write_text(self.folder / INPUTS, json.dumps([dict(entry) for entry in inputs], indent=2))

    def metrics(self, values: Sequence[Mapping[str, object]]) -> None:
        with open(self.folder / "metrics.jsonl", "a") as out:
            for value in values:
                out.write(json.dumps(dict(value)) + "\n")

    def add(self, contents: Contents) -> None:
        """Write `contents` into the record; its files are copied in unless they are in it already."""
        with self._writing():
            if contents.params:
                self.params(contents.params)
            if contents.tags:
                self.tags(contents.tags)
            if contents.inputs:
                self.inputs(contents.inputs)
            if contents.metrics:
                self.metrics(contents.metrics)
            for path, folder in contents.files:
                target = self.target(f"{folder}/{Path(path).name}" if folder else Path(path).name)
                if Path(path).resolve() != target.resolve():
                    shutil.copy2(path, target)

    def target(self, artifact_file: str) -> Path:
        """Where the artifact `artifact_file` goes in the record (its folder made)."""
        target = self.artifacts / artifact_file
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def text(self, text: str, artifact_file: str) -> Path:
        with self._writing():
            target = self.target(artifact_file)
            target.write_text(text)
        return target

    def figure(self, figure: Figure, artifact_file: str) -> Path:
        """Render `figure` into the record; returns the file, which the MLflow upload then reuses."""
        with self._writing():
            target = self.target(artifact_file)
            figure.savefig(target)
        return target


class RecordError(XentError):
    """The record cannot be written (a full disk, a folder made read-only), or cannot be trusted to re-log."""


def reason(exc: OSError) -> str:
    """An OSError in a few words: "No space left on device", not h5py's or zipfile's paragraph."""
    if exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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

    @property
    def checkpoint(self) -> Path:
        return self.folder.parent / CHECKPOINT

    def contents(self, checkpoint: bool = True) -> Contents:
        """All of it, as relog uploads it: params, inputs, metric values, the artifacts and (unless told not to)
        the checkpoint."""
        files = [
            (path, artifact_folder(str(path.relative_to(self.artifacts))))
            for path in sorted(self.artifacts.rglob("*"))
            if path.is_file()
        ]
        if checkpoint and self.checkpoint.exists():
            files.append((self.checkpoint, "checkpoint"))
        return Contents(dict(self.info.params), {}, list(self.inputs), list(self.metrics), files)


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with the model file `path` (empty, cut short, not a Keras archive), or None if it is whole.

    A Keras model file is a zip archive; its members' checksums are read back, without loading Keras.
    """
    if path.stat().st_size == 0:
        return "it is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in CHECKPOINT_MEMBERS if name not in archive.namelist()]
            damaged = None if missing else archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"it is not a whole Keras model file ({exc})"
    if missing:
        return f"it is not a whole Keras model file (no {', '.join(missing)})"
    return f"its member {damaged} is damaged" if damaged else None


def _refuse_links(folder: Path) -> None:
    """Relog uploads the record's own files: a symbolic link (which may point anywhere, a private key) or
    anything but a plain file or folder in it is refused, naming it."""
    paths = [folder, folder.parent / CHECKPOINT]
    for top, folders, files in os.walk(folder):  # never into a linked folder: os.walk does not follow links
        paths += [Path(top) / name for name in (*folders, *files)]
    for path in paths:
        if path.is_symlink():
            raise RecordError(
                f"the run record in {folder} holds a symbolic link, {path} -> {os.readlink(path)}; relog uploads "
                "only the record's own files: replace the link by a copy of the file if you mean to upload it"
            )
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise RecordError(f"the run record in {folder} holds {path}, which is not a plain file; remove it")


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
    if not (folder / "run.json").exists() and not (folder / "run.json").is_symlink():
        raise XentError(
            f"no run record in {output_dir}: pass the output folder of a training job "
            f"(outputs/DATE/TIME, or multirun/.../N), the one that holds {FOLDER}/run.json"
        )
    _refuse_links(folder)
    try:
        info = RunInfo(**json.loads((folder / "run.json").read_text()))
        lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").exists() else []
        metrics = _metric_lines(lines)
        inputs = json.loads((folder / INPUTS).read_text()) if (folder / INPUTS).exists() else []
    except (ValueError, TypeError) as exc:
        raise XentError(f"the run record in {folder} is damaged ({exc}); it cannot be re-logged") from exc
    return RecordedRun(folder, info, metrics, inputs)

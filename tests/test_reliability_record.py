"""Crashes that cannot be caught, and disks that fill up, against the run, its record and its checkpoint (issue 23).

- SIGKILL in the middle of the epoch-2 checkpoint save: the epoch-1 checkpoint stays whole, and relog uploads it.
- The disk of the output folder fills up during the checkpoint: the run ends FAILED in the store, with one error
  that names the file and the cause, also when the record cannot be written any more. On a real, small tmpfs.
- A native crash (SIGSEGV) leaves its run RUNNING: the next launch in the store says so, and how to close it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import LEAN, QUICK, create_store, refused_here, train_env, train_here
from xent_lab.errors import XentError
from xent_lab.tracking import record
from xent_lab.tracking import tags as T
from xent_lab.tracking.relog import relog

MNT_DETACH = 2  # umount2(2): detach now, even if a file on it is still open


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs, mounted for the test (mount(2) in this process): a record fits on it, a checkpoint does not.
    Needs root, as CI has; skipped, saying so, where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", bytes(mount_point), b"tmpfs", 0, b"size=256k") != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount needs root): {os.strerror(ctypes.get_errno())}")
    try:
        yield mount_point
    finally:
        assert libc.umount2(bytes(mount_point), MNT_DETACH) == 0, os.strerror(ctypes.get_errno())


def fill(disk: Path) -> None:
    """Write a file onto `disk` until it is full."""
    with open(disk / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


# Run as `python -c`: the trainer, with Keras' model file writer made to SIGKILL the process on its second call
# (the end of epoch 2), after the file it writes was opened, as a kill at that moment would.
KILLED_IN_THE_SECOND_SAVE = textwrap.dedent(
    """
    import os, runpy, signal, sys
    import keras.src.saving.saving_lib as saving_lib
    write, calls = saving_lib._save_model_to_fileobj, []
    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return write(*args, **kwargs)
    saving_lib._save_model_to_fileobj = dying
    sys.argv = ["xent_lab.train", *sys.argv[1:]]
    runpy.run_module("xent_lab.train", run_name="__main__")
    """
)


@pytest.mark.subprocess
def test_checkpoint_survives_a_sigkill_mid_save(tmp_path, cache_dir):
    """Item 7: the checkpoint is written to a temporary file and renamed; the kill leaves epoch 1's, whole."""
    uri = create_store(tmp_path)
    output_dir = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_IN_THE_SECOND_SAVE, *LEAN, "trainer.epochs=2"]
        + [f"tracking.uri={uri}", f"hydra.run.dir={output_dir}"],
        cwd=tmp_path,
        env=train_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    checkpoint = output_dir / record.CHECKPOINT
    assert checkpoint.stat().st_size > 0 and record.checkpoint_problem(checkpoint) is None
    assert [m["step"] for m in record.load(output_dir).metrics if m["key"] == T.TRAIN_LOSS] == [0]
    new_run_id = relog(output_dir, uri, force=True)
    files = {a.path for a in MlflowClient(uri).list_artifacts(new_run_id, "checkpoint")}
    assert files == {"checkpoint/checkpoint.keras"}


def test_disk_full_at_the_checkpoint_ends_the_run_failed_with_one_error(tmp_path, cache_dir, small_disk):
    """Item 10, as reported: the output folder's disk is too small for the checkpoint. The run ends FAILED, and
    the error (what `xent-train` prints on one line) names the file and the cause."""
    (tmp_path / "outputs").symlink_to(small_disk)
    with pytest.raises(XentError) as failed:
        train_here(tmp_path, cache_dir, QUICK)
    message = f"cannot save the model checkpoint {tmp_path / 'outputs' / record.CHECKPOINT}: No space left on device"
    assert str(failed.value) == message
    client = MlflowClient(create_store(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("xent-lab").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags[T.FAILURE_REASON] == f"XentError: {message}"


def test_disk_full_record_in_finally_does_not_mask_the_error(tmp_path, small_disk):
    """Item 10: the disk stays full, so the record's own last writes fail too: the run still ends FAILED in the
    store with the checkpoint's error, and that error, not the record's, is the one raised."""
    import keras

    from xent_lab.tracking import Tracker
    from xent_lab.training.callbacks import save_checkpoint

    uri = create_store(tmp_path)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(2)])
    message = f"cannot save the model checkpoint {small_disk / record.CHECKPOINT}: No space left on device"
    with pytest.raises(XentError) as failed, Tracker(uri, "exp").run("job", record_dir=small_disk) as run:
        run.log_metrics({"train/loss": 1.0}, step=0)
        fill(small_disk)
        save_checkpoint(model, small_disk / record.CHECKPOINT)
    assert str(failed.value) == message and isinstance(failed.value.__cause__, OSError)
    assert failed.value.__context__ is failed.value.__cause__  # nothing raised in the run's end masks it
    ended = MlflowClient(uri).get_run(run.run_id)
    assert ended.info.status == "FAILED" and ended.data.tags[T.FAILURE_REASON] == f"XentError: {message}"
    assert not (small_disk / record.CHECKPOINT).exists()


# Run as `python -c STORE OUTPUT_DIR`: a job that opens its run through the project's Tracker, then crashes
# natively (SIGSEGV, as TensorFlow does out of memory under `ulimit -v`): nothing can end the run.
CRASHES_IN_ITS_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from xent_lab.tracking import Tracker
    from xent_lab.tracking.runs import process_tags
    uri, output_dir = sys.argv[1:]
    tags = {**process_tags(), "output_dir": output_dir}
    with Tracker(uri, "xent-lab").run("crashed", tags=tags, record_dir=Path(output_dir)) as run:
        run.log_metrics({"train/loss": 1.0}, step=0)
        os.kill(os.getpid(), signal.SIGSEGV)
    """
)


@pytest.mark.subprocess
def test_a_native_crash_is_noticed_by_the_next_launch(tmp_path):
    """Item 18: the next launch in the store names the run left RUNNING, why it is dead, and the commands that
    close it or replace it by its record; both work."""
    uri = create_store(tmp_path)
    crashed_dir = tmp_path / "crashed"
    crash = subprocess.run(
        [sys.executable, "-c", CRASHES_IN_ITS_RUN, uri, str(crashed_dir)], capture_output=True, text=True, timeout=120
    )
    assert crash.returncode == -signal.SIGSEGV, crash.stderr[-2000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("xent-lab").experiment_id])
    assert run.info.status == "RUNNING"
    empty = tmp_path / "no-data"
    empty.mkdir()
    # The next launch: it stops after the warning, at the data (missing on purpose: no training is needed here).
    done = refused_here(
        tmp_path / "work",
        tmp_path / "no-cache",
        QUICK,
        f"tracking.uri={uri}",
        f"dataset.data_dir={empty}",
        "dataset.download=false",
    )
    assert done.returncode == 2
    pid = run.data.tags[T.PID]
    assert done.stderr.splitlines()[:2] == [
        f"warning: 1 run(s) in this store were left RUNNING by a process that died without ending them; close them "
        f"with `xent-runs close-stale --tracking-uri {uri}`, or replace each by what its job recorded (every finished "
        "epoch, the checkpoint) with the command shown",
        f"  run {run.info.run_id} (crashed): its process (pid {pid} on {socket.gethostname()}) is gone; replace it: "
        f"`xent-relog {crashed_dir} --force --tracking-uri {uri}`",
    ]
    new_run_id = relog(crashed_dir, uri, force=True)
    assert client.get_run(new_run_id).info.status == "KILLED"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_disk_full_before_the_record_starts_ends_the_run_failed(tmp_path, small_disk):
    """Item 10: a record that cannot even be started fails its run in one error; the run is not left RUNNING."""
    from xent_lab.tracking import Tracker

    uri = create_store(tmp_path)
    fill(small_disk)
    tracker = Tracker(uri, "exp")
    with pytest.raises(XentError) as failed, tracker.run("job", record_dir=small_disk):
        pass
    message = f"cannot write the run record in {small_disk / record.FOLDER}: No space left on device"
    assert str(failed.value) == message
    (run,) = tracker.client.search_runs([tracker.experiment_id()])
    assert run.info.status == "FAILED" and run.data.tags[T.FAILURE_REASON] == f"RecordError: {message}"

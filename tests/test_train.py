"""End to end on the real datasets, checked through MLflow.

The trainings run in this process on the composed config (`train_here`); the command line is tested
where the process is what matters: exit codes and messages, Ctrl-C.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import (
    EXPECTED_ARTIFACTS,
    LEAN,
    QUICK,
    ROOT,
    artifact_paths,
    create_store,
    data_dir,
    history,
    refused_here,
    runs,
    store_uri,
    train_command,
    train_env,
    train_here,
)
from xent_lab.data import DataError
from xent_lab.errors import ConfigError, NonFiniteLossError, TrackingError
from xent_lab.tracking import tags as T


def only_run(workdir):
    found = runs(workdir)
    assert len(found) == 1, [r.info.run_name for r in found]
    return found[0]


def head_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.train
def test_default_run_reaches_97_percent_and_logs_everything(tmp_path, cache_dir, capsys):
    """The README's main job: full MNIST, MLP, categorical cross-entropy, 10 epochs; its 28 shifted test sets
    scored without intervals (their intervals are tested on quick runs: 56 bootstraps would double this test)."""
    trained = train_here(tmp_path, cache_dir, "evaluation.shift.bootstrap=0")
    run = trained.run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mnist-mlp-cce-builtin-s0"
    metrics = run.data.metrics
    assert metrics[T.TEST_ACCURACY] >= 0.97
    assert metrics[T.TEST_ACCURACY] == pytest.approx(trained.results[T.TEST_ACCURACY])
    per_epoch = (
        "train/loss",
        "val/loss",
        "train/accuracy",
        "val/accuracy",
        "val/ece",
        "val/mce",
        "val/adaece",
        "val/classwise_ece",
        "val/brier",
        "val/nll",
        "val/cross_entropy",
        "val/kl",
        T.EPOCH_SECONDS,
    )
    for name in per_epoch:
        steps = [step for step, _ in history(tmp_path, run.info.run_id, name)]
        assert steps == list(range(10)), name
    for name in (T.TEST_LOSS, T.TEST_ECE, T.TEST_ECE_TS, T.TEST_TEMPERATURE, T.MEAN_EPOCH_SECONDS):
        assert math.isfinite(metrics[name]), name
    shifted = {name.split("/")[1] for name in metrics if name.startswith("shift/")}
    assert shifted == {"rotate", "gaussian_noise", "gaussian_blur", "contrast"}, shifted
    assert metrics["shift/rotate/0/accuracy"] == pytest.approx(metrics[T.TEST_ACCURACY])
    params = run.data.params
    assert params["loss.name"] == "cce" and params["trainer.epochs"] == "10" and params["seed"] == "0"
    assert params["trainer.optimizer._target_"] == "keras.optimizers.Adam"
    tags = run.data.tags
    assert (tags[T.DATASET], tags[T.MODEL], tags[T.LOSS], tags[T.IMPL]) == ("mnist", "mlp", "cce", "builtin")
    assert tags[T.DEVICE] == "CPU"
    assert tags[T.GIT_COMMIT].removesuffix("-dirty") == head_commit()
    assert artifact_paths(tmp_path, run.info.run_id) >= EXPECTED_ARTIFACTS
    # The summary tells the user the result and how to open the run.
    out = capsys.readouterr().out
    assert run.info.run_id in out and "mlflow ui --backend-store-uri" in out
    assert f"test accuracy {metrics[T.TEST_ACCURACY]:.4f}" in out


@pytest.mark.train
def test_imdb_bce_trains_on_raw_reviews(tmp_path, cache_dir):
    trained = train_here(tmp_path, cache_dir, QUICK, "dataset=imdb", "loss=bce", "trainer.epochs=3")
    run = trained.run
    assert run.info.status == "FINISHED"
    assert run.data.tags[T.MODEL] == "embedding_avg"
    assert run.data.metrics[T.TEST_ACCURACY] > 0.6  # chance is 0.5
    assert [s for s, _ in history(tmp_path, run.info.run_id, "val/loss")] == [0, 1, 2]
    # debug=quick's one shifted set of reviews, in the store with its intervals and after the temperature.
    shifted = {name for name in run.data.metrics if name.startswith("shift/")}
    expected = ("accuracy", "ece/ci_low", "ece/ci_high", "ts/nll", "ts/brier/ci_high", "ts/ece")
    assert {f"shift/word_dropout/0.2/{name}" for name in expected} <= shifted
    assert all(name.startswith("shift/word_dropout/0.2/") for name in shifted)
    # The digest of the archive actually read, as SHA256SUMS of the shared data lists it.
    listed = {
        name: digest for digest, name in (line.split() for line in (data_dir() / "SHA256SUMS").read_text().splitlines())
    }
    assert run.data.tags[f"{T.DATA_SHA256_PREFIX}aclImdb_v1.tar.gz"] == listed["aclImdb_v1.tar.gz"]


@pytest.mark.slow
def test_focal_builtin_cnn_on_cpu_with_model_logged(tmp_path, cache_dir):
    trained = train_here(
        tmp_path,
        cache_dir,
        QUICK,
        "loss=focal",
        "loss.impl=builtin",
        "model=cnn",
        "trainer.device=cpu",
        "tracking.log_model=true",
    )
    run = trained.run
    assert run.info.status == "FINISHED" and run.info.run_name == "mnist-cnn-focal-builtin-s0"
    assert run.outputs.model_outputs  # the MLflow Model; tests/test_lineage.py loads and checks one
    # The checkpoint written after every epoch loads back as the trained model.
    assert (trained.output_dir / "checkpoint.keras").stat().st_size > 0


@pytest.mark.train
def test_probability_path_with_label_smoothing_logs_the_entropy_identity(tmp_path, cache_dir):
    trained = train_here(
        tmp_path, cache_dir, QUICK, "trainer.epochs=2", "loss.from_logits=false", "loss.label_smoothing=0.1"
    )
    run = trained.run
    assert run.data.params["loss.from_logits"] == "False"
    assert run.data.metrics[T.TEST_ACCURACY] > 0.8
    run_id = run.info.run_id
    # H(p, q) = H(p) + KL(p || q) per epoch; with smoothing the targets have entropy > 0.
    for (step, xent), (_, target_entropy), (_, kl) in zip(
        history(tmp_path, run_id, "val/cross_entropy"),
        history(tmp_path, run_id, "val/target_entropy"),
        history(tmp_path, run_id, "val/kl"),
        strict=True,
    ):
        assert xent == pytest.approx(target_entropy + kl, rel=1e-5), step
        assert target_entropy > 0.1 and kl > 0
    # Keras' val_loss is the same smoothed cross-entropy the decomposition measures.
    assert history(tmp_path, run_id, "val/cross_entropy")[-1][1] == pytest.approx(
        history(tmp_path, run_id, "val/loss")[-1][1], rel=1e-3
    )


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.epochs=-1", "trainer.epochs"),
        ("loss.label_smoothing=1.5", "loss.label_smoothing"),
        ("loss=focal loss.gamma=-1", "loss.gamma"),
        ("trainer.device=tpu", "trainer.device"),
        ("loss=_common", "loss.name"),
        ("calibration.methods=most", "calibration.methods"),
        # Issue 23: each of these was accepted, and failed after training or ran code.
        pytest.param("trainer.optimizer._target_=numpy.load", "trainer.optimizer._target_", id="item3-target"),
        pytest.param("tracking.register_as='a/b'", "tracking.register_as", id="item11-register_as"),
        pytest.param("seed=-1", "seed", id="item22-seed"),
        pytest.param("calibration.n_bins=10000000", "calibration.n_bins", id="item22-n_bins"),
        pytest.param("dataset.val_size=10", "dataset.val_size", id="item22-val_size"),
        pytest.param("tracking.run_name=[a,b]", "tracking.run_name", id="item22-run_name"),
        pytest.param("tracking.experiment='..'", "tracking.experiment", id="item23-experiment"),
    ],
)
def test_invalid_config_fails_before_any_run(tmp_path, cache_dir, override, key):
    with pytest.raises(ConfigError, match=f"invalid config value {key}="):
        train_here(tmp_path, cache_dir, *override.split())
    # No experiment and no run written (the store itself is made up front by `train_here`, as a copy).
    assert MlflowClient(store_uri(tmp_path)).get_experiment_by_name("xent-lab") is None
    assert not (tmp_path / "outputs").exists()


def test_a_recalibration_method_the_head_cannot_take_fails_before_training(tmp_path, cache_dir):
    # Platt scaling needs one sigmoid output; cross-entropy on MNIST gives a 10-way softmax.
    with pytest.raises(ConfigError, match="platt cannot recalibrate a softmax head"):
        train_here(tmp_path, cache_dir, QUICK, "calibration.methods=[temperature,platt]")
    assert runs(tmp_path) == []


def test_unknown_experiment_or_debug_option_on_the_command_line_runs_nothing(tmp_path, cache_dir):
    # `experiment=nosuch` trained a full default run and exited 0: Hydra's refusal, as for any other group.
    for group in ("experiment", "debug"):
        done = refused_here(tmp_path / "launch", cache_dir, f"{group}=nosuch")
        assert done.returncode == 1
        assert done.stderr.splitlines()[0] == f"In 'config': Could not find '{group}/nosuch'"
    assert list((tmp_path / "launch").iterdir()) == []


@contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """`path` made read-only for this process: a read-only tmpfs mounted there as root (a mode is no bar to root)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.subprocess  # `mount`
@pytest.mark.parametrize(
    "overrides,key",
    [
        ((QUICK,), "hydra.run.dir=outputs/"),
        (("experiment=mnist_losses", QUICK, "loss=cce", "seed=0"), "hydra.sweep.dir="),
    ],
    ids=["run", "sweep"],
)
def test_read_only_output_folder_is_one_line(tmp_path, cache_dir, overrides, key):
    with read_only_folder(tmp_path / "ro") as launch_dir:
        done = refused_here(launch_dir, cache_dir, *overrides)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert line.startswith(f"error: {key}") and line.endswith(
            f"cannot be written: {launch_dir} is read-only or not writable by this user; launch from a writable "
            f"folder or set {key.split('=')[0]} to one"
        ), line
        assert list(launch_dir.iterdir()) == []


def test_missing_data_names_the_file_and_how_to_fix_it(tmp_path, cache_dir):
    empty = tmp_path / "nodata"
    empty.mkdir()
    with pytest.raises(DataError) as raised:
        train_here(tmp_path, cache_dir, "dataset.download=false", f"dataset.data_dir={empty}")
    message = str(raised.value)
    assert "train-images-idx3-ubyte.gz" in message and str(empty) in message
    assert "XENT_DATA_DIR" in message
    assert runs(tmp_path) == []


def test_unreachable_tracking_server_fails_fast(tmp_path, cache_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        train_here(tmp_path, cache_dir, f"tracking.uri=http://127.0.0.1:{port}", "tracking.connect_timeout=2")
    assert f"http://127.0.0.1:{port}" in str(raised.value) and "make server" in str(raised.value)
    assert time.monotonic() - started < 10  # a 2 s probe, before any data is loaded


def test_nan_loss_stops_training_and_fails_the_run(tmp_path, cache_dir):
    with pytest.raises(NonFiniteLossError, match="loss became"):
        train_here(
            tmp_path,
            cache_dir,
            QUICK,
            "trainer.optimizer._target_=keras.optimizers.SGD",
            "trainer.optimizer.learning_rate=1e30",
        )
    run = only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags[T.FAILURE_REASON]


@pytest.mark.subprocess
def test_ctrl_c_ends_the_run_as_killed(tmp_path, cache_dir):
    create_store(tmp_path)
    # Started with SIGINT ignored, as a non-interactive shell starts background jobs (CI does):
    # the trainer must still turn Ctrl-C into a KILLED run.
    process = subprocess.Popen(
        train_command(*LEAN, "trainer.epochs=500"),
        cwd=tmp_path,
        env=train_env(cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = runs(tmp_path)
            if found and history(tmp_path, found[0].info.run_id, T.TRAIN_LOSS):
                break  # training is under way
            time.sleep(1)
        else:
            pytest.fail("training did not start within 180 s")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output[-2000:]
    run = only_run(tmp_path)
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags[T.FAILURE_REASON]
    assert history(tmp_path, run.info.run_id, T.TRAIN_LOSS)  # what was logged stays

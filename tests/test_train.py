"""End to end: `python -m xent_lab.train` as a subprocess on the real datasets, checked through MLflow."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import time

import pytest

from tests.e2e import QUICK, QUICK_IMDB, artifact_paths, create_store, history, run_train, runs, train_command, train_env

pytestmark = pytest.mark.slow

EXPECTED_ARTIFACTS = {
    "config/config.yaml",
    "config/overrides.yaml",
    "model_summary.txt",
    "plots/loss_curves.png",
    "plots/reliability_val.png",
    "plots/reliability_test.png",
    "predictions/test_predictions.npz",
}


def only_run(workdir):
    found = runs(workdir)
    assert len(found) == 1, [r.info.run_name for r in found]
    return found[0]


def test_default_run_reaches_97_percent_and_logs_everything(tmp_path, cache_dir):
    """The README's main job: full MNIST, MLP, categorical cross-entropy, 10 epochs."""
    done = run_train(tmp_path, cache_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mnist-mlp-cce-builtin-s0"
    metrics = run.data.metrics
    assert metrics["test/accuracy"] >= 0.97
    per_epoch = ("train/loss", "val/loss", "train/accuracy", "val/accuracy", "val/ece", "val/mce", "val/adaece",
                 "val/classwise_ece", "val/brier", "val/nll", "val/cross_entropy", "val/kl", "perf/epoch_seconds")
    for name in per_epoch:
        steps = [step for step, _ in history(tmp_path, run.info.run_id, name)]
        assert steps == list(range(10)), name
    for name in ("test/loss", "test/ece", "test/ece_ts", "test/temperature", "perf/mean_epoch_seconds"):
        assert math.isfinite(metrics[name]), name
    params = run.data.params
    assert params["loss.name"] == "cce" and params["trainer.epochs"] == "10" and params["seed"] == "0"
    assert params["trainer.optimizer._target_"] == "keras.optimizers.Adam"
    tags = run.data.tags
    assert (tags["dataset"], tags["model"], tags["loss"], tags["impl"]) == ("mnist", "mlp", "cce", "builtin")
    assert tags["device"] == "CPU" and len(tags["git_commit"]) >= 7
    assert EXPECTED_ARTIFACTS <= artifact_paths(tmp_path, run.info.run_id)
    # The summary tells the user the result and how to open the run.
    assert run.info.run_id in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    assert f"test accuracy {metrics['test/accuracy']:.4f}" in done.stdout


def test_imdb_bce_trains_on_raw_reviews(tmp_path, cache_dir):
    done = run_train(tmp_path, cache_dir, *QUICK_IMDB, "loss=bce", "trainer.epochs=3")
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "embedding_avg"
    assert run.data.metrics["test/accuracy"] > 0.6  # chance is 0.5
    assert [s for s, _ in history(tmp_path, run.info.run_id, "val/loss")] == [0, 1, 2]
    assert any(key.startswith("data_sha256.") for key in run.data.tags)


def test_focal_builtin_cnn_on_cpu_with_model_logged(tmp_path, cache_dir):
    done = run_train(
        tmp_path, cache_dir, *QUICK, "loss=focal", "loss.impl=builtin", "model=cnn", "trainer.device=cpu",
        "trainer.epochs=1", "tracking.log_model=true",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "mnist-cnn-focal-builtin-s0"
    assert "model/model.keras" in artifact_paths(tmp_path, run.info.run_id)


def test_probability_path_with_label_smoothing_logs_the_entropy_identity(tmp_path, cache_dir):
    done = run_train(tmp_path, cache_dir, *QUICK, "loss.from_logits=false", "loss.label_smoothing=0.1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run(tmp_path)
    assert run.data.params["loss.from_logits"] == "False"
    assert run.data.metrics["test/accuracy"] > 0.8
    run_id = run.info.run_id
    # H(p, q) = H(p) + KL(p || q) per epoch; with smoothing the targets have entropy > 0.
    for (step, xent), (_, target_entropy), (_, kl) in zip(
        history(tmp_path, run_id, "val/cross_entropy"), history(tmp_path, run_id, "val/target_entropy"),
        history(tmp_path, run_id, "val/kl"), strict=True,
    ):
        assert xent == pytest.approx(target_entropy + kl, rel=1e-5), step
        assert target_entropy > 0.1 and kl > 0
    # Keras' val_loss is the same smoothed cross-entropy the decomposition measures.
    assert history(tmp_path, run_id, "val/cross_entropy")[-1][1] == pytest.approx(
        history(tmp_path, run_id, "val/loss")[-1][1], rel=1e-3)


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.epochs=-1", "trainer.epochs"),
        ("loss.label_smoothing=1.5", "loss.label_smoothing"),
        ("loss=focal loss.gamma=-1", "loss.gamma"),
        ("trainer.device=tpu", "trainer.device"),
    ],
)
def test_invalid_config_fails_before_any_run(tmp_path, cache_dir, override, key):
    done = run_train(tmp_path, cache_dir, *override.split(), timeout=120)
    assert done.returncode == 2
    assert f"invalid config value {key}=" in done.stderr
    assert "Traceback" not in done.stderr
    assert runs(tmp_path) == []  # no run created, no store written


def test_missing_data_names_the_file_and_how_to_fix_it(tmp_path, cache_dir):
    empty = tmp_path / "nodata"
    empty.mkdir()
    done = run_train(
        tmp_path, cache_dir, "dataset.download=false", env=train_env(cache_dir, XENT_DATA_DIR=str(empty)), timeout=120
    )
    assert done.returncode == 2
    assert "train-images-idx3-ubyte.gz" in done.stderr and str(empty) in done.stderr
    assert "XENT_DATA_DIR" in done.stderr
    assert runs(tmp_path) == []


def test_unreachable_tracking_server_fails_fast(tmp_path, cache_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    done = run_train(tmp_path, cache_dir, f"tracking.uri=http://127.0.0.1:{port}", "tracking.connect_timeout=2",
                     timeout=120)
    assert done.returncode == 2
    assert f"http://127.0.0.1:{port}" in done.stderr and "make server" in done.stderr
    assert time.monotonic() - started < 30  # interpreter + TensorFlow import, then a 2 s probe


def test_nan_loss_stops_training_and_fails_the_run(tmp_path, cache_dir):
    done = run_train(
        tmp_path, cache_dir, *QUICK, "trainer.optimizer._target_=keras.optimizers.SGD",
        "trainer.optimizer.learning_rate=1e30",
    )
    assert done.returncode == 2
    assert "loss became" in done.stderr
    run = only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["failure_reason"]


def test_ctrl_c_ends_the_run_as_killed(tmp_path, cache_dir):
    create_store(tmp_path)
    # Started with SIGINT ignored, as a non-interactive shell starts background jobs (CI does):
    # the trainer must still turn Ctrl-C into a KILLED run.
    process = subprocess.Popen(
        train_command("trainer.epochs=50"), cwd=tmp_path, env=train_env(cache_dir),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = runs(tmp_path)
            if found and history(tmp_path, found[0].info.run_id, "train/loss"):
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
    assert "interrupted" in run.data.tags["failure_reason"]
    assert history(tmp_path, run.info.run_id, "train/loss")  # what was logged stays

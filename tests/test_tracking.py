"""MLflow tracking against a real SQLite store: URIs, run lifecycle, per-epoch batches."""

from __future__ import annotations

import base64
import http.server
import socket
import subprocess
import threading
import time

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import create_store
from xent_lab import tracking
from xent_lab.errors import TrackingError
from xent_lab.record import MlflowSink
from xent_lab.tracking import tags as T
from xent_lab.training.callbacks import EpochEvents


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # One store for the module, a copy of a migrated one: MLflow's migrations take seconds per new SQLite file.
    return create_store(tmp_path_factory.mktemp("store"))


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_uri("sqlite:///runs/x.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/runs/x.db"
    assert tracking.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"


def test_uri_precedence_config_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.resolve_uri(None, tmp_path) == "http://127.0.0.1:5999"
    assert tracking.resolve_uri("http://host:5000", tmp_path) == "http://host:5000"


@pytest.fixture
def health_server():
    """A real HTTP server answering /health, and the Authorization headers it received."""
    received: list[str | None] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.headers.get("Authorization"))
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args) -> None:  # keeps the test output clean
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}", received
    server.shutdown()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_health_probe_sends_credentials_from_the_uri_or_else_from_mlflows_variables(health_server, monkeypatch):
    address, received = health_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-env")
    tracking.probe_health(f"http://alice:p%40ss@{address}", timeout=5)  # the URI's own win, unquoted
    tracking.probe_health(f"http://{address}", timeout=5)  # as MLflow's client: the environment's
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    tracking.probe_health(f"http://{address}", timeout=5)
    assert received == [_basic("alice", "p@ss"), _basic("bob", "from-env"), None]


def test_redact_hides_the_password_only():
    assert tracking.redact("postgresql://alice:s3cret@db:5432/mlflow") == "postgresql://alice:***@db:5432/mlflow"
    assert tracking.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    "key,name",
    [("loss", "train/loss"), ("val_accuracy", "val/accuracy"), ("val/ece", "val/ece"), ("accuracy", "train/accuracy")],
)
def test_metric_names(key, name):
    assert T.metric_name(key) == name


def test_unreachable_server_fails_fast_naming_the_uri():
    with socket.socket() as sock:  # a port nothing listens on: bind, read it, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://user:pw@127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=f"127.0.0.1:{port}") as raised:
        tracking.check_reachable(uri, timeout=2)
    assert time.monotonic() - started < 5
    assert "pw" not in str(raised.value)


def test_successful_run_is_finished(store):
    tracker = tracking.Tracker(store, "exp")
    with tracker.run("ok", tags={"loss": "cce"}) as run:
        run.log_params({f"p{i}": str(i) for i in range(150)})  # more than one log_batch
        run.log_metrics({"train/loss": 0.5, "val/loss": 0.6}, step=3)
    got = MlflowClient(store).get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags["loss"] == "cce" and got.info.run_name == "ok"
    assert len(got.data.params) == 150
    assert got.data.metrics == {"train/loss": 0.5, "val/loss": 0.6}


def test_artifacts_live_beside_the_sqlite_file_whatever_the_working_directory(tmp_path, monkeypatch):
    # MLflow's default root is ./mlruns of wherever the experiment was first created: a later launch from
    # another directory, or deleting that one, would lose the runs' artifacts while the database lists them.
    store = create_store(tmp_path / "store")
    for cwd in ("first", "second"):
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        with tracking.Tracker(store, "my study/1").run(cwd) as run:
            MlflowClient(store).log_text(run.run_id, cwd, "note.txt")
        folder = tmp_path / "store" / "mlruns" / "my_study_1-2ac978aa15"  # see the next test
        assert (folder / run.run_id / "artifacts" / "note.txt").read_text() == cwd
        assert not (tmp_path / cwd / "mlruns").exists()


def test_experiment_names_share_or_escape_no_artifact_folder(tmp_path):
    # "a/b" and "a_b" shared mlruns/a_b, "实验" and "测试" shared mlruns/__, and ".." wrote beside mlflow.db: deleting
    # one experiment's folder deleted another's artifacts. Each folder is a slug and a hash of the exact name.
    store = create_store(tmp_path)
    names = ["a/b", "a_b", "实验", "测试", "..", "A", "a"]
    folders = {}
    for name in names:
        with tracking.Tracker(store, name).run("r") as run:
            MlflowClient(store).log_text(run.run_id, name, "name.txt")
        folders[name] = next((tmp_path / "mlruns").glob(f"*/{run.run_id}/artifacts/name.txt")).parts[-4]
    assert folders == {
        "a/b": "a_b-c14cddc033",
        "a_b": "a_b-648fa9b31b",
        "实验": "experiment-5e42855db3",
        "测试": "experiment-6aa8f49cc9",
        "..": "experiment-5ec1f7e700",
        "A": "A-559aead082",
        "a": "a-ca978112ca",
    }
    # Nothing beside the database but mlruns/ (and the store's lock file).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock", "mlruns"]


def test_experiment_names_an_existing_experiment_keeps_its_folder(tmp_path):
    # A store made before the hash suffix: its experiment keeps writing where its runs already are.
    store = create_store(tmp_path)
    old = tmp_path / "mlruns" / "a_b"
    MlflowClient(store).create_experiment("a/b", artifact_location=str(old))
    with tracking.Tracker(store, "a/b").run("r") as run:
        MlflowClient(store).log_text(run.run_id, "x", "note.txt")
    assert (old / run.run_id / "artifacts" / "note.txt").read_text() == "x"


@pytest.mark.parametrize("error,status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_interrupted_run_is_ended_with_the_reason(store, error, status):
    tracker = tracking.Tracker(store, "exp")
    with pytest.raises(type(error)), tracker.run("bad") as run:
        run.log_metrics({"train/loss": 1.0}, step=0)
        raise error
    got = MlflowClient(store).get_run(run.run_id)
    assert got.info.status == status
    assert got.data.metrics["train/loss"] == 1.0  # what was logged before stays
    reason = got.data.tags[T.FAILURE_REASON]
    assert ("boom" in reason) if status == "FAILED" else ("interrupted" in reason)


def test_the_mlflow_sink_logs_each_epoch_with_its_step(store):
    tracker = tracking.Tracker(store, "exp")
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = (x.sum(axis=1) > 2).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    # Eager steps: the sink is under test, not the traced training step (tracing it costs most of the test).
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"], run_eagerly=True)
    with tracker.run("fit") as run:
        logger = EpochEvents([MlflowSink(run)])
        model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[logger])
    client = MlflowClient(store)
    for name in ("train/loss", "val/loss", "train/accuracy", "val/accuracy", "perf/epoch_seconds"):
        assert [m.step for m in client.get_metric_history(run.run_id, name)] == [0, 1, 2], name
    assert len(logger.epoch_seconds) == 3 and all(s > 0 for s in logger.epoch_seconds)


def test_git_commit_is_dirty_for_code_and_study_configs_not_for_study_reports(tmp_path):
    from xent_lab.tracking.store import git_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "experiments" / "a_study").mkdir(parents=True)
    files = {"code.py": "x = 1\n", "experiments/a_study.yaml": "a: 1\n", "experiments/a_study/REPORT.md": "old\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "experiments" / "a_study" / "REPORT.md").write_text("rewritten by a launch\n")
    assert git_commit(tmp_path) == head  # a study's report is its output
    (tmp_path / "experiments" / "a_study.yaml").write_text("a: 2\n")
    assert git_commit(tmp_path) == f"{head}-dirty"  # a study's config is an input
    git("checkout", "-q", "--", "experiments/a_study.yaml")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head}-dirty"

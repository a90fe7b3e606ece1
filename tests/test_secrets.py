"""Issue 23, items 1, 2 and 9: a tracking URI's password, in its user info or in its query, is hidden wherever the
URI is written, and nowhere else; a record whose URI was redacted is re-logged only where the user says.

In-process, on the real composed config and the real writers' texts; the end-to-end runs against PostgreSQL and a
tracking server are in test_server.py (`test_query_password_never_written`, `test_short_password_hides_only_the_uri`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.e2e import compose_config
from xent_lab import config, relog
from xent_lab.tracking import record
from xent_lab.tracking.secrets import has_secret, redact, scrub, scrub_logs

QUERY = "postgresql://xent@127.0.0.1:55432/mlflow?password=S3cr-et"
SHORT = "http://bob:0@127.0.0.1:5000"


@pytest.mark.parametrize(
    "uri,redacted",
    [
        (QUERY, "postgresql://xent@127.0.0.1:55432/mlflow?password=***"),
        (
            "postgresql://xent@db/mlflow?sslmode=require&password=p%40ss",
            "postgresql://xent@db/mlflow?sslmode=require&password=***",
        ),
        (
            "postgresql://alice:s3cret@db:5432/mlflow?sslpassword=k",
            "postgresql://alice:***@db:5432/mlflow?sslpassword=***",
        ),
        (SHORT, "http://bob:***@127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////o/mlflow.db", "sqlite:////o/mlflow.db"),
        ("postgresql://xent@db/mlflow?sslmode=require", "postgresql://xent@db/mlflow?sslmode=require"),
    ],
)
def test_query_password_is_redacted_like_a_user_info_password(uri, redacted):
    assert redact(uri) == redacted
    assert has_secret(uri) is (uri != redacted)


def test_query_password_never_written():
    """Item 1: every text the trainer and a study write with the URI in it, from the real composed config."""
    cfg = compose_config(Path("/w"), Path("/c"), f"tracking.uri='{QUERY}'")  # quoted: Hydra's grammar, for the =
    hidden = "postgresql://xent@127.0.0.1:55432/mlflow?password=***"
    params = {key: scrub(value, QUERY) for key, value in config.flatten(cfg).items()}  # the run's params
    assert params["tracking.uri"] == hidden
    assert "S3cr-et" not in scrub(OmegaConf.to_yaml(cfg, resolve=True), QUERY)  # config/*.yaml, .hydra/config.yaml
    assert scrub(f"debug=quick tracking.uri='{QUERY}'", QUERY) == f"debug=quick tracking.uri='{hidden}'"  # tag
    assert scrub(f'- tracking.uri="{QUERY}"\n', QUERY) == f'- tracking.uri="{hidden}"\n'  # .hydra/overrides.yaml
    assert scrub(json.dumps({"tracking.uri": QUERY}), QUERY) == json.dumps({"tracking.uri": hidden})  # xent.sweep
    assert scrub(f"uri: '{QUERY}'", QUERY) == f"uri: '{hidden}'"
    # As a driver may write it: the secret as a URI part of a URI written another way.
    assert scrub("postgresql+psycopg://xent@127.0.0.1/mlflow?password=S3cr-et&x=1", QUERY) == (
        "postgresql+psycopg://xent@127.0.0.1/mlflow?password=***&x=1"
    )


def test_short_password_hides_only_the_uri():
    """Item 2: `http://bob:0@HOST` hides its password where the URI is, never the other 0s of the config."""
    cfg = compose_config(Path("/w"), Path("/c"), f"tracking.uri={SHORT}", "trainer.optimizer.learning_rate=0.001")
    flat = config.flatten(cfg)
    params = {key: scrub(value, SHORT) for key, value in flat.items()}
    assert params == {**flat, "tracking.uri": "http://bob:***@127.0.0.1:5000"}
    assert params["trainer.optimizer.learning_rate"] == "0.001"
    text = OmegaConf.to_yaml(cfg, resolve=True)
    assert scrub(text, SHORT) == text.replace(SHORT, "http://bob:***@127.0.0.1:5000")
    assert text.count("0") > 10  # the config has many 0s; they all stay
    assert scrub("seed=0 trainer.epochs=10 tracking.uri=http://bob:0@127.0.0.1:5000", SHORT) == (
        "seed=0 trainer.epochs=10 tracking.uri=http://bob:***@127.0.0.1:5000"
    )


def test_short_password_hides_only_the_uri_in_log_records():
    """Items 1-2 in log lines (Hydra lists a job's overrides through logging)."""
    scrub_logs(SHORT)
    scrub_logs(QUERY)
    record = logging.getLogRecordFactory()(
        "hydra", logging.INFO, __file__, 1, "#0 : seed=0 %s %s", (SHORT, QUERY), None
    )
    assert record.getMessage() == (
        "#0 : seed=0 http://bob:***@127.0.0.1:5000 postgresql://xent@127.0.0.1:55432/mlflow?password=***"
    )


# --------------------------------------------------------------------------- item 9: relog of a redacted URI


@pytest.mark.parametrize(
    "redacted",
    ["postgresql://xent:***@127.0.0.1:55432/mlflow", "postgresql://xent@127.0.0.1:55432/mlflow?password=***"],
)
def test_relog_of_a_redacted_uri_asks_for_the_uri(redacted, tmp_path, monkeypatch, capsys):
    """Item 9: the record says the run went to a store whose password is not kept; relog refuses, instead of
    creating ./mlflow.db and logging there."""
    job = tmp_path / "outputs" / "job"
    info = record.RunInfo("xent-lab", "run1", redacted, {}, status="FINISHED", run_id="0" * 32)
    record.LocalRecord(job, info)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert relog.main([str(job)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {job} was logged to {redacted}, not to the default store "
        f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}; relog takes its store from the command line only: pass "
        "--tracking-uri URI (or set MLFLOW_TRACKING_URI)\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outputs"]  # no ./mlflow.db


def test_relog_of_a_redacted_uri_prints_the_command_with_its_uri():
    """Item 9: the command the trainer prints after losing the store names the store, the password left to fill."""
    from xent_lab.record.harness import relog_command

    assert relog_command(Path("/o/job 1"), QUERY) == (
        "python -m xent_lab.relog '/o/job 1' --tracking-uri "
        "'postgresql://xent@127.0.0.1:55432/mlflow?password=***' (with the password in place of ***)"
    )
    assert relog_command(Path("/o/job"), "sqlite:////o/mlflow.db") == (
        "python -m xent_lab.relog /o/job --tracking-uri sqlite:////o/mlflow.db"
    )

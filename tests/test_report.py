"""Study report against a real MLflow SQLite store holding synthetic launches of a study.

The store holds, in experiment "mnist_losses":
- an old launch (parent P0) whose cce/custom/seed-1 child is reused by the latest launch, and a
  cce/builtin/seed-5 child that is not;
- an irrelevant older launch (P1) with a sparse_cce child;
- the latest launch (P2, still RUNNING): loss=cce and loss=focal, custom and builtin, seeds 0-1, one
  failed focal/builtin/seed-2 job, a single-seed custom-only loss=focal_flsd53, and an imdb job;
- a parent of another study, started last, which must not be picked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from tests.helpers.e2e import create_store
from xent_lab import calibration, report
from xent_lab.report import ReportError

STUDY = "mnist_losses"
T0 = 1_700_000_000_000  # ms
N_TEST = 120
EPOCHS = 4
FAILURE = "NonFiniteLossError: the training loss became NaN at epoch 3"
MNIST_SHA = {"train-images-idx3-ubyte.gz": "a" * 64, "t10k-labels-idx1-ubyte.gz": "b" * 64}
IMDB_SHA = {"aclImdb_v1.tar.gz": "c" * 64}


@dataclass
class Store:
    uri: str
    client: MlflowClient
    experiment_id: str
    tmp: Path  # where predictions are written before they are logged
    rng: np.random.Generator
    parents: dict[str, str] = field(default_factory=dict)  # P0, P1, P2, other -> run id
    children: dict[str, str] = field(default_factory=dict)  # run name -> run id
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # run name -> final metrics
    durations_ms: list[int] = field(default_factory=list)  # of P2's own children
    last_end_ms: int = 0  # of P2's own children


def _parent(store: Store, key: str, start: int, study: str = STUDY, **tags: str) -> str:
    run = store.client.create_run(
        store.experiment_id,
        start_time=start,
        run_name=f"{study}-{key}",
        tags={
            "xent.study": study,
            "xent.role": "parent",
            "git_commit": "abc123",
            "xent.command": f"python -m xent_lab.train experiment={study} --multirun",
            "xent.sweep": json.dumps({"loss": "cce,focal", "loss.impl": "custom,builtin", "seed": "0,1"}),
            "xent.launch_host": "lab-01 (Intel Xeon, 2 cores)",
            **tags,
        },
    )
    store.parents[key] = run.info.run_id
    return run.info.run_id


def _child(
    store: Store,
    parent_id: str,
    name: str,
    *,
    loss: str,
    impl: str,
    seed: int,
    start: int,
    duration: int = 5_000,
    dataset: str = "mnist",
    overrides: dict[str, str] | None = None,
    failed: bool = False,
    commit: str = "abc123",
) -> None:
    """A child run as xent_lab.train logs it: tags, params, final metrics, val/loss and val/nll histories,
    predictions."""
    n_classes, head, model = (2, "sigmoid", "embedding_avg") if dataset == "imdb" else (10, "softmax", "mlp")
    if overrides is None:
        overrides = {"loss": loss, "loss.impl": impl, "seed": str(seed)}
    tags = {
        "mlflow.parentRunId": parent_id,
        "xent.study": STUDY,
        "xent.role": "child",
        "xent.config_hash": f"hash-{name}",
        "xent.job_overrides": json.dumps(overrides),
        "dataset": dataset,
        "model": model,
        "loss": loss.removesuffix("_flsd53"),
        "impl": impl,
        "seed": str(seed),
        "device": "CPU",
        "precision": "float32",
        "git_commit": commit,
        **{f"data_sha256.{file}": digest for file, digest in (IMDB_SHA if dataset == "imdb" else MNIST_SHA).items()},
    }
    if failed:
        tags["failure_reason"] = FAILURE
    run_id = store.client.create_run(store.experiment_id, start_time=start, run_name=name, tags=tags).info.run_id
    params = {
        "dataset.name": dataset,
        "dataset.limit.train": "1000",
        "model.name": model,
        "trainer.epochs": str(EPOCHS),
        "trainer.batch_size": "128",
        "calibration.n_bins": "10",
        **({"loss.gamma": "flsd53" if loss.endswith("_flsd53") else "2.0"} if loss.startswith("focal") else {}),
    }
    store.client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])
    if not failed:
        rng = store.rng
        metrics = {column.metric: float(rng.uniform(0.02, 0.98)) for column in report.COLUMNS}
        metrics["test/loss"] = float(rng.uniform(0.1, 0.5))
        metrics.update({f"test/recall/{k}": float(rng.uniform(0.5, 1)) for k in range(n_classes)})
        # val/nll, the figure's, repeats val/loss: no further draws, so the pinned numbers below stay.
        losses = [1 / (epoch + 1) + float(rng.uniform(0, 0.1)) for epoch in range(EPOCHS)]
        history = [
            Metric(key, value, start, epoch) for key in ("val/loss", "val/nll") for epoch, value in enumerate(losses)
        ]
        store.client.log_batch(run_id, metrics=[Metric(k, v, start, 0) for k, v in metrics.items()] + history)
        store.metrics[name] = metrics
        folder = store.tmp / name
        folder.mkdir()
        logits = rng.normal(size=(N_TEST,) if head == "sigmoid" else (N_TEST, n_classes)) * 3
        path = calibration.save_predictions(
            folder / "test_predictions.npz", logits, rng.integers(0, n_classes, N_TEST), head
        )
        store.client.log_artifact(run_id, str(path), "predictions")
    store.client.set_terminated(run_id, "FAILED" if failed else "FINISHED", end_time=start + duration)
    store.children[name] = run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("report-store")
    uri = create_store(root)
    client = MlflowClient(uri)
    store = Store(uri, client, client.create_experiment(STUDY), root, np.random.default_rng(0))

    # Old launch: its sweep had no `loss` key, so the reused run's variant comes from its `loss` tag.
    p0 = _parent(store, "P0", T0)
    _child(
        store,
        p0,
        "old-cce-custom-s1",
        loss="cce",
        impl="custom",
        seed=1,
        start=T0 + 1_000,
        overrides={"loss.impl": "custom", "seed": "1"},
        commit="old999",
    )
    _child(store, p0, "old-cce-builtin-s5", loss="cce", impl="builtin", seed=5, start=T0 + 2_000)
    p1 = _parent(store, "P1", T0 + 100_000)
    _child(store, p1, "irrelevant-sparse", loss="sparse_cce", impl="custom", seed=0, start=T0 + 101_000)

    start = T0 + 1_000_000
    p2 = _parent(store, "P2", start, **{"xent.reused.hash-old-cce-custom-s1": store.children["old-cce-custom-s1"]})
    jobs = [("cce", "custom", 0), ("cce", "builtin", 0), ("cce", "builtin", 1)]
    jobs += [("focal", impl, seed) for impl in ("custom", "builtin") for seed in (0, 1)]
    jobs += [("focal_flsd53", "custom", 0)]
    for i, (loss, impl, seed) in enumerate(jobs):
        duration = 5_000 + 1_000 * i
        _child(
            store,
            p2,
            f"{loss}-{impl}-s{seed}",
            loss=loss,
            impl=impl,
            seed=seed,
            start=start + 10_000 * (i + 1),
            duration=duration,
        )
        store.durations_ms.append(duration)
    _child(
        store,
        p2,
        "focal-builtin-s2",
        loss="focal",
        impl="builtin",
        seed=2,
        failed=True,
        start=start + 100_000,
        duration=2_000,
    )
    _child(
        store,
        p2,
        "imdb-bce-custom-s0",
        loss="bce",
        impl="custom",
        seed=0,
        dataset="imdb",
        start=start + 110_000,
        duration=7_000,
    )
    store.durations_ms += [2_000, 7_000]
    store.last_end_ms = start + 117_000

    _parent(store, "other", start + 500_000, study="other_study")
    return store


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> tuple[Path, str]:
    path = report.build_report(STUDY, tracking_uri=store.uri, out_dir=tmp_path_factory.mktemp("report"))
    return path, path.read_text()


# --------------------------------------------------------------------------- markdown parsing


def _section(text: str, heading: str) -> list[str]:
    """The lines under `heading` up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level
        ),
        len(lines),
    )
    return lines[start + 1 : end]


def _tables(lines: list[str]) -> list[list[dict[str, str]]]:
    """Each markdown table in `lines`, as rows of header -> cell."""
    tables, block = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            header, _separator, *rows = block
            tables.append([dict(zip(header, row, strict=True)) for row in rows])
            block = []
    return tables


def _row(table: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [row for row in table if all(row[key] == value for key, value in match.items())]
    assert len(found) == 1, (match, table)
    return found[0]


def _mean_std(cell: str) -> tuple[float, float]:
    mean, std = cell.split(" ± ")
    return float(mean), float(std)


def _close(shown: float, expected: float, digits: int) -> bool:
    return abs(shown - expected) <= 0.5 * 10**-digits + 1e-12


# Runs of each row of the latest launch: (variant, impl) -> finished run names. The reused run of the
# old launch counts as a seed of loss=cce/custom.
ROWS = {
    ("loss=cce", "custom"): ["cce-custom-s0", "old-cce-custom-s1"],
    ("loss=cce", "builtin"): ["cce-builtin-s0", "cce-builtin-s1"],
    ("loss=focal", "custom"): ["focal-custom-s0", "focal-custom-s1"],
    ("loss=focal", "builtin"): ["focal-builtin-s0", "focal-builtin-s1"],
}


# --------------------------------------------------------------------------- tests


def test_table_means_and_stds_equal_numpy_over_seeds(store, built):
    means, _ = _tables(_section(built[1], "## Results: mnist"))
    for (variant, impl), names in ROWS.items():
        row = _row(means, variant=variant, impl=impl)
        assert row["seeds"] == "2"
        assert row["failed"] == ("1" if (variant, impl) == ("loss=focal", "builtin") else "0")
        for column in report.COLUMNS:
            values = [store.metrics[name][column.metric] for name in names]
            mean, std = _mean_std(row[column.label])
            assert _close(mean, np.mean(values), column.digits), (variant, impl, column)
            assert _close(std, np.std(values, ddof=1), column.digits), (variant, impl, column)


def test_confidence_intervals_are_student_t(store, built):
    _, intervals = _tables(_section(built[1], "## Results: mnist"))
    values = [store.metrics[name]["test/accuracy"] for name in ROWS["loss=focal", "custom"]]
    half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
    cell = _row(intervals, variant="loss=focal", impl="custom")["accuracy"]
    low, high = (float(x) for x in cell.strip("[]").split(","))
    assert _close(low, np.mean(values) - half, 4) and _close(high, np.mean(values) + half, 4)


def test_single_seed_shows_its_value_and_no_interval(store, built):
    means, intervals = _tables(_section(built[1], "## Results: mnist"))
    assert _row(means, variant="loss=focal_flsd53", impl="custom")["accuracy"] == (
        f"{store.metrics['focal_flsd53-custom-s0']['test/accuracy']:.4f}"
    )
    assert _row(intervals, variant="loss=focal_flsd53", impl="custom")["accuracy"] == "n/a"


def test_one_table_per_dataset(store, built):
    means, _ = _tables(_section(built[1], "## Results: imdb"))
    assert [(row["variant"], row["impl"], row["seeds"]) for row in means] == [("loss=bce", "custom", "1")]


# Custom/builtin run pairs with the same seed, per variant; focal seed 2 failed with builtin and never ran with custom.
PAIRS = {
    "loss=cce": [("cce-custom-s0", "cce-builtin-s0"), ("old-cce-custom-s1", "cce-builtin-s1")],
    "loss=focal": [("focal-custom-s0", "focal-builtin-s0"), ("focal-custom-s1", "focal-builtin-s1")],
}


def test_custom_vs_builtin_largest_differences(store, built):
    (table,) = _tables(_section(built[1], "## Custom vs built-in"))
    for variant, pairs in PAIRS.items():
        row = _row(table, dataset="mnist", variant=variant)
        assert row["paired seeds"] == "2"
        loss, accuracy = (
            max(abs(store.metrics[c][key] - store.metrics[b][key]) for c, b in pairs)
            for key in ("test/loss", "test/accuracy")
        )
        assert math.isclose(float(row["max abs Δ test loss"]), loss, rel_tol=1e-2)  # shown as 1.23e-02
        assert _close(float(row["max abs Δ test accuracy"]), accuracy, 4)
    assert "only custom" in _row(table, dataset="mnist", variant="loss=focal_flsd53")["paired seeds"]
    assert "only custom" in _row(table, dataset="imdb", variant="loss=bce")["paired seeds"]


def test_failed_run_is_listed_with_its_reason(store, built):
    section = "\n".join(_section(built[1], "## Failed runs"))
    assert "focal-builtin-s2" in section and store.children["focal-builtin-s2"] in section
    assert FAILURE in section and '"seed": "2"' in section


def test_header_describes_the_latest_launch_only(store, built):
    text = built[1]
    assert "python -m xent_lab.train experiment=mnist_losses --multirun" in text
    assert store.parents["P2"] in text and store.parents["P0"] not in text
    assert "11 jobs: 10 finished (1 reused from earlier launches), 1 failed" in text
    assert "2023-11-14T22:30:00+00:00" in text  # P2's start, T0 + 1000 s, in UTC
    assert "lab-01 (Intel Xeon, 2 cores); devices: CPU" in text
    assert "`abc123`" in text and "`old999`" in text  # the reused run ran at another commit: flagged
    wall = (store.last_end_ms - (T0 + 1_000_000)) / 1000
    assert f"{wall:.2f} s" in text and f"{sum(store.durations_ms) / 1000:.2f} s" in text
    assert "python -m xent_lab.report mnist_losses" in text
    # Neither the irrelevant launch nor the old launch's unreused child appears.
    assert "sparse_cce" not in text
    assert store.children["old-cce-builtin-s5"] not in text


def test_setup_lists_settings_and_checksums(built):
    settings, checksums = _tables(_section(built[1], "## Setup"))
    assert _row(settings, setting="`dataset.limit.train`")["value"] == "1000"
    assert _row(settings, setting="`model.name`")["value"] == "embedding_avg, mlp (varies)"
    assert _row(settings, setting="`trainer.epochs`")["value"] == str(EPOCHS)
    for file, digest in {**MNIST_SHA, **IMDB_SHA}.items():
        assert _row(checksums, file=file)["sha256"] == f"`{digest}`"


def test_plots_are_valid_pngs_linked_from_the_report(built):
    path, text = built
    for name in ("forest.png", "val_nll.png", "reliability.png", "temperature.png"):
        png = path.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        height, width, _ = image.imread(png).shape
        assert height > 100 and width > 200  # the forest of this store's few rows is one short line of panels
        assert f"]({name})" in text
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


# Fragments of the report the fixture's store renders, as report.py wrote them before it became a package:
# the layout of REPORT.md is pinned, so committed reports never need regenerating for a refactor.
EXPECTED_HEADER = (
    '- **Sweep:** `{"loss": "cce,focal", "loss.impl": "custom,builtin", "seed": "0,1"}`\n'
    "- **Commit:** `abc123` — **warning: some jobs ran at other commits:** `old999`\n"
    "- **Date:** 2023-11-14T22:30:00+00:00 (start of the launch, UTC)\n"
    "- **Machine:** lab-01 (Intel Xeon, 2 cores); devices: CPU\n"
    "- **Wall time:** 117.00 s (0:01:57) from the launch to the last job's end; "
    "77.00 s (0:01:17) summed over the 10 jobs run in this launch; job time per dataset, reused runs included: "
    "imdb 7.00 s (0:00:07) over 1 run (7 s a run), mnist 75.00 s (0:01:15) over 10 runs (8 s a run)\n"
    "- **Runs:** 11 jobs: 10 finished (1 reused from earlier launches), 1 failed; "
    "parent run `PARENT` in experiment `mnist_losses`\n"
)
EXPECTED_IMDB = """## Results: imdb

### Mean ± std over seeds

Seeds: finished runs; a single seed shows its value alone. T: fitted temperature; (TS): after temperature scaling.

| variant | impl | seeds | failed | accuracy | NLL | ECE | AdaECE | Brier | ECE (TS) | T | s/epoch |
|---|---|---|---|---|---|---|---|---|---|---|---|
| loss=bce | custom | 1 | 0 | 0.6693 | 0.5044 | 0.0458 | 0.7203 | 0.3589 | 0.1837 | 0.649 | 0.21 |

### 95% confidence intervals (Student t)
"""
EXPECTED_CUSTOM = """## Custom vs built-in

Largest difference between the custom and built-in implementation over the seeds run with both.

| dataset | variant | paired seeds | max abs Δ test loss | max abs Δ test accuracy |
|---|---|---|---|---|
| imdb | loss=bce | only custom: nothing to compare | – | – |
| mnist | loss=cce | 2 | 1.47e-01 | 0.6687 |
| mnist | loss=focal | 2 | 8.29e-02 | 0.2113 |
| mnist | loss=focal_flsd53 | only custom: nothing to compare | – | – |
"""
EXPECTED_FIGURES = """## Figures

### Differences against the baseline: seed interval and combined (seeds and test set) interval

![Differences against the baseline: seed interval and combined (seeds and test set) interval](forest.png)

### Validation NLL per epoch, the kept epoch marked

![Validation NLL per epoch, the kept epoch marked](val_nll.png)

### Reliability, pooled over seeds (10 bins; bins under 20 samples not drawn)

![Reliability, pooled over seeds (10 bins; bins under 20 samples not drawn)](reliability.png)

### Fitted temperature against focal γ

![Fitted temperature against focal γ](temperature.png)
"""
EXPECTED_FAILED = """## Failed runs

- **focal-builtin-s2** (`FAILED_RUN`, FAILED), overrides `{"loss": "focal", "loss.impl": "builtin", "seed": "2"}`: \
NonFiniteLossError: the training loss became NaN at epoch 3
"""


def test_markdown_is_unchanged(store, built):
    path, text = built
    assert EXPECTED_HEADER.replace("PARENT", store.parents["P2"]) in text
    assert EXPECTED_IMDB in text
    assert EXPECTED_CUSTOM in text and EXPECTED_FIGURES in text
    assert text.endswith(EXPECTED_FAILED.replace("FAILED_RUN", store.children["focal-builtin-s2"]))
    assert (path.stat().st_mode & 0o777) == 0o644


def test_report_is_logged_to_the_parent_run(store, built):
    logged = {item.path for item in store.client.list_artifacts(store.parents["P2"], "report")}
    assert logged == {
        f"report/{name}" for name in ("REPORT.md", "forest.png", "val_nll.png", "reliability.png", "temperature.png")
    }


def test_parent_run_id_selects_an_earlier_launch(store, tmp_path):
    text = report.build_report(STUDY, tracking_uri=store.uri, parent_run_id=store.parents["P1"], out_dir=tmp_path)
    means, _ = _tables(_section(text.read_text(), "## Results: mnist"))
    assert [(row["variant"], row["seeds"]) for row in means] == [("loss=sparse_cce", "1")]


def test_missing_study_or_parent_is_a_report_error(store, tmp_path):
    with pytest.raises(ReportError, match="no MLflow experiment named 'nope'.*experiment=nope"):
        report.build_report("nope", tracking_uri=store.uri, out_dir=tmp_path)
    with pytest.raises(ReportError, match="no parent run of study 'ghost' in experiment 'mnist_losses'"):
        report.build_report("ghost", tracking_uri=store.uri, experiment=STUDY, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def _cli(store: Store, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xent_lab.report", *args, "--tracking-uri", store.uri],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.subprocess
def test_cli_writes_the_report(store, tmp_path):
    done = _cli(store, tmp_path, STUDY, "--out-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Custom vs built-in" in (tmp_path / "out" / "REPORT.md").read_text()
    assert done.stdout.strip().splitlines()[-1] == f"report written to {tmp_path / 'out' / 'REPORT.md'}"


@pytest.mark.subprocess
def test_cli_unknown_study_exits_2_with_one_error_line(store, tmp_path):
    done = _cli(store, tmp_path, "nope")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no MLflow experiment named 'nope'")
    assert "python -m xent_lab.train experiment=nope" in last
    assert not (tmp_path / "experiments").exists()


def test_overfitting_tables_stay_out_when_no_run_reaches_the_accuracy_threshold(built):
    # study.overfit is unset (auto) and the fixture's runs log no train/accuracy: nothing to show.
    assert "### Over-fitting" not in built[1] and "## Findings" in built[1]


def test_a_store_tag_never_decides_where_the_report_is_written(store, tmp_path, capsys):
    """Issue 23, item 4: `xent.sweep_dir` and `xent.published` are tags anyone with write access to the store can
    set; the report goes to --out-dir or experiments/STUDY only, and a trial launch's needs --out-dir."""
    from xent_lab.report.__main__ import main

    chosen = tmp_path / "chosen-by-the-tagger"
    launch = store.parents["P1"]
    args = [STUDY, "--tracking-uri", store.uri, "--parent-run-id", launch]
    store.client.set_tag(launch, "xent.sweep_dir", str(chosen))
    try:
        store.client.set_tag(launch, "xent.published", "false")
        assert main(args) == 2
        assert capsys.readouterr().err == (
            f"error: launch {launch} of study mnist_losses had command-line changes (xent.published=false): its "
            "report would replace the published one in experiments/mnist_losses; pass --out-dir\n"
        )
        store.client.set_tag(launch, "xent.published", "true")
        assert main([*args, "--out-dir", str(tmp_path / "out")]) == 0
        assert (tmp_path / "out" / "REPORT.md").is_file()
        assert not chosen.exists()
    finally:
        store.client.delete_tag(launch, "xent.sweep_dir")
        store.client.delete_tag(launch, "xent.published")

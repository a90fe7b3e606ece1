"""The MLflow UI over a real store, walked in headless Chromium as a user would.

One real short training writes a SQLite store; a real `mlflow server` serves it (the run's artifacts stay
where the trainer wrote them, on local disk, and the server reads them from there); Selenium drives the
system Chromium through: experiments list -> experiment "xent-lab" -> the run, by name -> its metric
charts -> its artifacts, where the reliability diagram must load as an image.

Chromium and chromedriver come from `bash .ci/system-packages`; without them the test FAILS and says so.
On a failed wait, a screenshot and the page source are saved in the test's tmp folder (named in the message).
"""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from selenium.webdriver.common.keys import Keys

from tests.helpers.browser import BrowserUnavailable, MlflowUi, make_driver, require_browser
from tests.helpers.e2e import QUICK, create_store, run_train, store_uri
from xent_lab.tracking import tags as T
from xent_lab.tracking.server import start_server

pytestmark = pytest.mark.ui

EXPERIMENT = "xent-lab"
RUN_NAME = "mnist-mlp-cce-builtin-s0"
IMAGE = T.RELIABILITY_ARTIFACT.format(split="test")


def png_width(path: Path) -> int:
    """Width from the PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">I", header[16:20])[0]


def test_mlflow_ui_shows_the_run_its_charts_and_artifacts(tmp_path, cache_dir):
    try:
        require_browser()  # before a training that would be wasted
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    started = time.monotonic()
    workdir = tmp_path / "work"
    workdir.mkdir()
    create_store(workdir)  # before the trainer and the server both open it
    with ThreadPoolExecutor(1) as pool, start_server(store_uri(workdir), tmp_path / "mlartifacts") as server:
        # The training runs while the server and Chromium start (both take seconds).
        training = pool.submit(run_train, workdir, cache_dir, QUICK, "trainer.epochs=2")  # a curve, not a point
        try:
            driver = make_driver(tmp_path / "chromium-profile")
        except BrowserUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            done = training.result()
            assert done.returncode == 0, done.stderr[-3000:]
            trained = time.monotonic()
            client = MlflowClient(store_uri(workdir))
            (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
            assert run.info.run_name == RUN_NAME
            # Logged straight to SQLite: the artifacts are files on local disk, which the server reads from there.
            local_image = Path(run.info.artifact_uri) / IMAGE
            assert local_image.is_file(), f"artifact_uri={run.info.artifact_uri}"

            ui = MlflowUi(driver, server.uri, debug_dir=tmp_path / "ui-failures")
            ui.open_experiments()
            ui.open_experiment(EXPERIMENT)
            ui.open_run(RUN_NAME)
            assert f"/runs/{run.info.run_id}" in driver.current_url, driver.current_url

            # Model metrics: one section per prefix (train, val, ...), one chart per metric, the run in its legend.
            ui.open_tab("Model metrics")
            section = '//*[@data-testid="experiment-view-compare-runs-section-header"]//*[normalize-space(text())="{}"]'
            for name in (T.TRAIN_PREFIX.rstrip("/"), T.VAL_PREFIX.rstrip("/")):
                ui.find(section.format(name), f'a "{name}" section of metric charts')
            search = ui.find('//input[@placeholder="Search metric charts"]', "the metric charts' search box")
            search.send_keys(T.VAL_LOSS)
            ui.find(
                f'//*[normalize-space(text())="{RUN_NAME} ({T.VAL_LOSS})"]',
                f'a {T.VAL_LOSS} chart with "{RUN_NAME} ({T.VAL_LOSS})" in its legend',
            )
            ui.wait_for_charts()

            # Artifacts: the reliability diagram, listed in the tree and previewed as an image.
            ui.open_tab("Artifacts")
            ui.open_artifact(IMAGE)
            width = ui.image_preview(IMAGE)
            assert width == png_width(local_image), (
                f"the preview of {IMAGE} is {width} px wide, the logged file {png_width(local_image)} px"
            )
        finally:
            driver.quit()
    print(
        f"training (server and browser starting alongside) {trained - started:.1f} s, "
        f"UI walk {time.monotonic() - trained:.1f} s"
    )


def test_mlflow_ui_shows_the_runs_datasets_and_its_logged_model(tmp_path, cache_dir):
    """The lineage views of README's lineage.png: the run's three datasets (name, digest, context) in its
    "Data details" drawer, and its logged model on the experiment's Models page with the model's test accuracy."""
    try:
        require_browser()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    workdir = tmp_path / "work"
    workdir.mkdir()
    create_store(workdir)
    with ThreadPoolExecutor(1) as pool, start_server(store_uri(workdir), tmp_path / "mlartifacts") as server:
        training = pool.submit(run_train, workdir, cache_dir, QUICK, "tracking.log_model=true")
        try:
            driver = make_driver(tmp_path / "chromium-profile")
        except BrowserUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            done = training.result()
            assert done.returncode == 0, done.stderr[-3000:]
            client = MlflowClient(store_uri(workdir))
            (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
            contexts = [
                (item.dataset, next(t.value for t in item.tags if t.key == T.DATASET_CONTEXT))
                for item in run.inputs.dataset_inputs
            ]
            test = next(dataset for dataset, context in contexts if context == T.SPLIT_CONTEXTS["test"])
            inputs = {f"{dataset.name} ({dataset.digest})": context for dataset, context in contexts}
            assert sorted(inputs.values()) == sorted(T.SPLIT_CONTEXTS.values()), inputs
            (output,) = run.outputs.model_outputs
            model = client.get_logged_model(output.model_id)
            accuracy = next(m.value for m in model.metrics if m.key == T.TEST_ACCURACY)

            ui = MlflowUi(driver, server.uri, debug_dir=tmp_path / "ui-failures")
            ui.open_experiments()
            ui.open_experiment(EXPERIMENT)
            ui.open_run(RUN_NAME)
            drawer = ui.open_datasets(f"{test.name} ({test.digest})")
            for label, context in inputs.items():
                item = ui.find(f'{drawer}//*[@role="button" and @aria-label="{label}"]', f"{label!r} in the drawer")
                assert item.text.lower().split() == [*label.lower().split(), context], item.text

            ui.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
            ui.open_models()
            ui.choose_model_columns(("Metrics",), f"Dataset: {test.name} (#{test.digest})", (T.TEST_ACCURACY,))
            shown = ui.model_metric(RUN_NAME, T.TEST_ACCURACY)
            assert float(shown) == accuracy, f"the Models page shows {T.TEST_ACCURACY}={shown}, the model {accuracy}"
        finally:
            driver.quit()

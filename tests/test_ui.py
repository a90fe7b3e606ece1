"""The MLflow UI over a real store, walked in headless Chromium as a user would.

One real short training (its model logged) writes a SQLite store; a real `mlflow server` serves it (the run's
artifacts stay where the trainer wrote them, on local disk, and the server reads them from there), one Chromium for
the module's tests. Selenium drives the system Chromium through: experiments list -> experiment "xent-lab" -> the
run, by name -> its metric charts -> its artifacts, where the reliability diagram must load as an image.

Chromium and chromedriver come from `bash .ci/system-packages`; without them the test FAILS and says so.
On a failed wait, a screenshot and the page source are saved in the test's tmp folder (named in the message).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.helpers.browser import BrowserUnavailable, MlflowUi, make_driver, require_browser
from tests.helpers.e2e import LEAN, create_store, run_train, store_uri
from xent_lab.tracking import tags as T
from xent_lab.tracking.server import Server, start_server

pytestmark = pytest.mark.ui

EXPERIMENT = "xent-lab"
RUN_NAME = "mnist-mlp-cce-builtin-s0"
IMAGE = T.RELIABILITY_ARTIFACT.format(split="test")


def png_width(path: Path) -> int:
    """Width from the PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">I", header[16:20])[0]


@dataclass(frozen=True)
class Served:
    """One finished training (2 epochs, its model logged) in a SQLite store, served by `mlflow server`, and the
    Chromium that walks it: shared by the tests of this module, which only read."""

    server: Server
    driver: WebDriver
    client: MlflowClient
    run: Run
    debug_dir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory, cache_dir) -> Iterator[Served]:
    try:
        require_browser()  # before a training that would be wasted
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    tmp_path = tmp_path_factory.mktemp("ui")
    started = time.monotonic()
    workdir = tmp_path / "work"
    workdir.mkdir()
    create_store(workdir)  # before the trainer and the server both open it
    with ThreadPoolExecutor(1) as pool, start_server(store_uri(workdir), tmp_path / "mlartifacts") as server:
        # The training runs while the server and Chromium start (both take seconds); 2 epochs: a curve, not a point.
        training = pool.submit(run_train, workdir, cache_dir, *LEAN, "trainer.epochs=2", "tracking.log_model=true")
        try:
            driver = make_driver(tmp_path / "chromium-profile")
        except BrowserUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            done = training.result()
            assert done.returncode == 0, done.stderr[-3000:]
            print(f"training (server and browser starting alongside) {time.monotonic() - started:.1f} s")
            client = MlflowClient(store_uri(workdir))
            (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
            assert run.info.run_name == RUN_NAME
            yield Served(server, driver, client, run, tmp_path / "ui-failures")
        finally:
            driver.quit()


def test_mlflow_ui_shows_the_run_its_charts_and_artifacts(served: Served):
    run, driver = served.run, served.driver
    # Logged straight to SQLite: the artifacts are files on local disk, which the server reads from there.
    local_image = Path(run.info.artifact_uri) / IMAGE
    assert local_image.is_file(), f"artifact_uri={run.info.artifact_uri}"

    ui = MlflowUi(driver, served.server.uri, debug_dir=served.debug_dir)
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


def test_mlflow_ui_shows_the_runs_datasets_and_its_logged_model(served: Served):
    """The lineage views of README's lineage.png: the run's three datasets (name, digest, context) in its
    "Data details" drawer, and its logged model on the experiment's Models page with the model's test accuracy."""
    run, client = served.run, served.client
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

    ui = MlflowUi(served.driver, served.server.uri, debug_dir=served.debug_dir)
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

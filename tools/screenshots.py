"""The README's dashboard screenshots: headless Chromium over the real MLflow UI of a store.

    python -m tools.screenshots --store sqlite:///PATH/mlflow.db --out docs/screenshots

(from the repository root) starts the MLflow UI over the store (`xent_lab.tracking.server.start_server`),
opens it in headless Chromium as a user would (experiments list -> experiment -> run -> tabs) and saves
1600 px wide PNGs:

    runs-table.png     an experiment's runs table: run names (studies expanded) and a few metric columns
    charts.png         the chart view comparing the runs (those matching --filter): train/ and val/ sections open
    run-overview.png   one run's overview: its description (`mlflow.note.content`), metrics, tags
    run-artifacts.png  the same run's artifacts with plots/reliability_test.png previewed
    study-report.png   a study's parent run (tag xent.role=parent): report/REPORT.md previewed at its Results
    lineage.png        a run's datasets (names, digests, contexts), over the logged models with their test metrics

The browser driver is tests/helpers/browser.py, shared with tests/test_ui.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from tests.helpers.browser import (
    HEIGHT,
    WIDTH,
    BrowserUnavailable,
    MlflowUi,
    UiError,
    make_driver,
    set_viewport,
    xpath_literal,
)
from xent_lab.tracking import tags as T
from xent_lab.tracking.server import start_server

# Comparable across losses: a run's `loss` is the value of its own loss function, its NLL is the same measure.
TABLE_METRICS = (T.TEST_ACCURACY, T.test_metric("nll"), T.TEST_ECE, T.TEST_ECE_TS, T.test_metric("brier"))
HIDDEN_COLUMNS = ("Dataset", "Source", "Models")
# The UI groups metric charts by the prefix before the last "/".
COLLAPSED_SECTIONS = tuple(prefix.rstrip("/") for prefix in (T.PERF_PREFIX, T.TEST_PREFIX, T.TEST_RECALL_PREFIX))
CHARTS_HEIGHT = 1590  # the train/ row and two rows of val/ (accuracy ... brier, classwise_ece ... ece)
REPORT_HEIGHT = 1300  # the report's "Results" tables
RELIABILITY_TEST = T.RELIABILITY_ARTIFACT.format(split="test")
REPORT_MD = f"{T.REPORT_ARTIFACT_DIR}/REPORT.md"
SHOWN_LOSS = "cce"  # the run shown by default: the baseline loss
# The Models page: hide the columns that stay empty here and all metrics, then show these, on the test dataset.
MODEL_COLUMNS_HIDDEN = ("Status", "Logged from", "Dataset", "Metrics", "Parameters")
LINEAGE_METRICS = (T.TEST_ACCURACY, T.test_metric("nll"), T.TEST_ECE, T.TEST_ECE_TS)
MODEL_COLUMNS_NARROWED = (("creation_time", -50), ("registered_models", -40), ("metricKey", -50))  # all in 1600 px
CROP_MARGIN = 24  # pixels kept below the last thing shown in a crop
GAP, GAP_COLOUR = 4, (208, 211, 216)  # the line between two stacked crops


def _choose_columns(ui: MlflowUi, metrics: tuple[str, ...], available: set[str]) -> None:
    """Columns menu: show `metrics` (those the runs have), hide the attribute columns that stay empty here."""
    ui.click('//button[normalize-space()="Columns"]', 'the "Columns" menu')
    for name in (*[m for m in metrics if m in available], *HIDDEN_COLUMNS):
        ui.click(f"//span[@title={xpath_literal(name)}]", f"the column {name!r} in the Columns menu")
    ui.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    search = '//input[@placeholder="Search columns"]'
    ui.wait(
        lambda d: not any(e.is_displayed() for e in d.find_elements(By.XPATH, search)), "the Columns menu to close", 10
    )


def _widen_columns(ui: MlflowUi, col_id_part: str, pixels: int) -> None:
    """Drag the right edge of each table column whose col-id contains `col_id_part` by `pixels` (< 0: narrower)."""
    headers = f'//div[@role="columnheader" and contains(@col-id, {xpath_literal(col_id_part)})]'
    for col_id in [e.get_attribute("col-id") for e in ui.driver.find_elements(By.XPATH, headers)]:
        # Found again by its col-id: a resize re-renders the header, and may reorder it.
        handle = (
            f'//div[@role="columnheader" and @col-id={xpath_literal(col_id)}]'
            '//div[contains(@class, "ag-header-cell-resize")]'
        )
        handles = [h for h in ui.driver.find_elements(By.XPATH, handle) if h.is_displayed()]
        if handles:
            ActionChains(ui.driver).click_and_hold(handles[0]).move_by_offset(pixels, 0).release().perform()
            time.sleep(0.2)


def _widen_runs_panel(ui: MlflowUi, pixels: int = 140) -> None:
    """In the chart view, drag the edge of the runs list beside the charts, so that run names are not cut."""
    handles = ui.driver.find_elements(By.CSS_SELECTOR, '.react-resizable > [handleaxis="e"]')  # 0 px wide
    if handles:
        drag = ActionChains(ui.driver).move_to_element(handles[0]).click_and_hold()
        for _ in range(4):  # in steps, as a hand would: the resizer follows mouse moves
            drag = drag.move_by_offset(pixels // 4, 0)
        drag.release().perform()


def _expand_studies(ui: MlflowUi) -> None:
    """Expand every parent run in the table, so that its children (the study's jobs) are listed."""
    for _ in range(20):
        buttons = [
            b
            for b in ui.driver.find_elements(
                By.XPATH, '//*[@role="row"]//*[contains(@col-id, "Run Name")]//button[.//*[local-name()="svg"]]'
            )
            if b.is_displayed() and "runnamecellrenderer" in (b.get_attribute("data-component-id") or "")
        ]
        collapsed = [b for b in buttons if "M7.25 7.25V4.5" in (b.get_attribute("innerHTML") or "")]  # the "+" icon
        if not collapsed:
            return
        collapsed[0].click()
        time.sleep(0.5)


def _collapse_sections(ui: MlflowUi, sections: tuple[str, ...]) -> None:
    for section in sections:
        header = (
            f'//*[@data-testid="experiment-view-compare-runs-section-header"]'
            f"[.//div[normalize-space(text())={xpath_literal(section)}]]"
        )
        for element in ui.driver.find_elements(By.XPATH, header):
            toggle = element.find_element(By.XPATH, "./ancestor::*[@aria-expanded][1]")
            if toggle.get_attribute("aria-expanded") == "true":
                ui.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
                toggle.click()
                time.sleep(0.3)


def _hide_in_charts(ui: MlflowUi, run_ids: list[str]) -> None:
    """Untick the eye of runs that have no metrics of their own (a study's parent run) in the chart view."""
    for run_id in run_ids:
        if not ui.driver.find_elements(By.XPATH, f'//*[@role="row" and @row-id="{run_id}"]'):
            continue  # not listed
        ui.click(
            f'//*[@role="row" and @row-id="{run_id}"]//label[.//*[normalize-space()="Hide run"]]',
            f"the 'Hide run' eye of run {run_id}",
        )


def _scroll_all_to_top(ui: MlflowUi) -> None:
    ui.driver.execute_script("document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })")


def _compress(path: Path, limit: int) -> None:
    """Re-encode a PNG over `limit` bytes with a 256-colour palette (screenshots of flat UI lose nothing visible)."""
    if path.stat().st_size <= limit:
        return
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _bottom(ui: MlflowUi, elements: list[WebElement]) -> int:
    """The lowest bottom edge of `elements` in the viewport, in pixels."""
    return int(max(ui.driver.execute_script("return arguments[0].getBoundingClientRect().bottom", e) for e in elements))


def _stack(parts: list[tuple[Path, int]], width: int, path: Path) -> Path:
    """One PNG of the top `height` pixels of each (screenshot, height), one under the other, a grey line between."""
    images = [Image.open(shot).convert("RGB").crop((0, 0, width, height)) for shot, height in parts]
    stacked = Image.new("RGB", (images[0].width, sum(i.height for i in images) + GAP * (len(images) - 1)), GAP_COLOUR)
    top = 0
    for image in images:
        stacked.paste(image, (0, top))
        top += image.height + GAP
    stacked.save(path)
    return path


class StoreContents:
    """What to photograph in a store: the experiment, one run of it, and a study's parent run."""

    def __init__(
        self,
        store: str,
        experiment: str | None,
        run: str | None,
        study_experiment: str | None,
        run_filter: str | None = None,
    ) -> None:
        client = MlflowClient(store)
        experiments = [e for e in client.search_experiments() if e.name != "Default"]
        runs_of = {e.name: client.search_runs([e.experiment_id], max_results=5000) for e in experiments}
        if not runs_of or not any(runs_of.values()):
            raise SystemExit(f"error: the store {store} holds no runs")
        if experiment is None:  # the experiment with the most runs
            experiment = max(runs_of, key=lambda name: len(runs_of[name]))
        if experiment not in runs_of:
            raise SystemExit(f"error: no experiment {experiment!r} in {store}; it has {sorted(runs_of)}")
        self.experiment = experiment
        experiment_id = next(e.experiment_id for e in experiments if e.name == experiment)
        self.runs = client.search_runs([experiment_id], filter_string=run_filter or "", max_results=5000)
        if not self.runs:
            raise SystemExit(f"error: no run of experiment {experiment!r} matches the filter {run_filter!r}")

        def is_parent(r: Run) -> bool:
            return r.data.tags.get(T.ROLE) == T.ROLE_PARENT

        # All of them: the UI lists a parent run beside its children that match a filter, even when it does not.
        self.parent_ids = [r.info.run_id for r in runs_of[experiment] if is_parent(r)]
        self.metrics = {key for r in self.runs for key in r.data.metrics}
        jobs = sorted(
            (r for r in self.runs if not is_parent(r) and r.info.status == "FINISHED"), key=lambda r: r.info.run_name
        )
        if run is None:
            preferred = [r for r in jobs if r.data.tags.get(T.LOSS) == SHOWN_LOSS and r.data.tags.get(T.NOTE)]
            if not (preferred or jobs):
                raise SystemExit(f"error: experiment {experiment!r} has no finished run to show")
            run = (preferred or jobs)[0].info.run_name
        elif run not in {r.info.run_name for r in self.runs}:
            raise SystemExit(
                f"error: experiment {experiment!r} has no run named {run!r}"
                + (f" that matches the filter {run_filter!r}" if run_filter else "")
            )
        self.run = run
        self.run_has_note = any(r.data.tags.get(T.NOTE) for r in self.runs if r.info.run_name == run)
        # The lineage: the run shown if it logged a model (tracking.log_model), else the first job that did.
        with_model = [r for r in jobs if r.outputs and r.outputs.model_outputs]
        model_run = next((r for r in with_model if r.info.run_name == run), with_model[0] if with_model else None)
        self.model_run: str | None = model_run.info.run_name if model_run else None
        self.test_dataset: tuple[str, str] | None = None  # (name, digest) of the model run's testing input
        for item in model_run.inputs.dataset_inputs if model_run else ():
            if any(t.key == T.DATASET_CONTEXT and t.value == T.SPLIT_CONTEXTS["test"] for t in item.tags):
                self.test_dataset = (item.dataset.name, item.dataset.digest)
        # The study: a parent run in study_experiment, else in the experiment shown, else anywhere.
        order = [study_experiment] if study_experiment else [experiment, *sorted(runs_of)]
        self.study: tuple[str, str] | None = None
        for name in order:
            if name not in runs_of:
                raise SystemExit(f"error: no experiment {name!r} in {store}; it has {sorted(runs_of)}")
            parents = [
                r
                for r in runs_of[name]
                if is_parent(r) and any(a.path == T.REPORT_ARTIFACT_DIR for a in client.list_artifacts(r.info.run_id))
            ]
            if parents:
                latest = max(parents, key=lambda r: r.info.start_time)
                self.study = (name, latest.info.run_name)
                break


def take_screenshots(
    store: str,
    out: Path,
    experiment: str | None = None,
    run: str | None = None,
    study_experiment: str | None = None,
    run_filter: str | None = None,
    width: int = WIDTH,
    max_bytes: int = 400_000,
) -> list[Path]:
    """Start the UI over `store` and write the screenshots (see the module's doc) into `out`; returns their paths.

    `run_filter`: an MLflow search filter typed into the runs search box after the table's screenshot, so that
    the charts compare fewer runs; the run shown is then one that matches it.
    """
    contents = StoreContents(store, experiment, run, study_experiment, run_filter)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="xent-shots-") as tmp,
        start_server(store, Path(tmp) / "mlartifacts") as server,
    ):
        driver = make_driver(Path(tmp) / "chromium", width, HEIGHT)
        try:
            ui = MlflowUi(driver, server.uri, timeout=90)  # failures: screenshots in a kept temporary folder

            def shot(name: str, height: int) -> None:
                set_viewport(driver, width, height)
                keep(ui.screenshot(out / f"{name}.png"))

            def keep(path: Path) -> None:
                _compress(path, max_bytes)
                written.append(path)
                print(f"wrote {path} ({path.stat().st_size // 1024} KB)", flush=True)

            # (a) the runs table
            ui.open_experiments()
            ui.open_experiment(contents.experiment)
            _expand_studies(ui)
            _choose_columns(ui, TABLE_METRICS, contents.metrics)
            _widen_columns(ui, "Run Name", 120)
            _widen_columns(ui, "metrics.", 25)
            ui.find(ui.run_link(contents.run), f"the run {contents.run!r} listed")
            rows = len(
                set(
                    driver.execute_script(
                        "return [...document.querySelectorAll('[role=row][row-id]')].map(r => r.getAttribute('row-id'))"
                    )
                )
            )
            shot("runs-table", min(HEIGHT, 330 + 30 * rows))

            # (b) the chart view, runs side by side (fewer of them with a filter)
            set_viewport(driver, width, HEIGHT)
            if run_filter:
                ui.filter_runs(run_filter)
            ui.click('//label[.//input[@name="runs-view-mode" and @value="CHART"]]', "the chart view switch")
            ui.find('//input[@placeholder="Search metric charts"]', "the chart view")
            _hide_in_charts(ui, contents.parent_ids)
            _widen_runs_panel(ui)
            _collapse_sections(ui, COLLAPSED_SECTIONS)
            _scroll_all_to_top(ui)
            set_viewport(driver, width, CHARTS_HEIGHT)
            ui.wait_for_charts()
            shot("charts", CHARTS_HEIGHT)

            # (c) one run's overview and (d) its artifacts
            set_viewport(driver, width, HEIGHT)
            ui.click('//label[.//input[@name="runs-view-mode" and @value="TABLE"]]', "the table view switch")
            ui.open_run(contents.run)
            if contents.run_has_note:
                ui.find('//*[normalize-space()="Description"]', "the run's description")
            shot("run-overview", HEIGHT)
            ui.open_tab("Artifacts")
            ui.open_artifact(RELIABILITY_TEST)
            ui.image_preview(RELIABILITY_TEST)
            shot("run-artifacts", HEIGHT)

            # (e) a study's parent run and its report
            if contents.study is None:
                print(
                    f"note: no run with tag {T.ROLE}={T.ROLE_PARENT} and a {T.REPORT_ARTIFACT_DIR}/ folder in "
                    "this store: study-report.png not taken",
                    flush=True,
                )
            else:
                parent_experiment, parent = contents.study
                ui.open_experiments()
                ui.open_experiment(parent_experiment)
                ui.open_run(parent)
                ui.open_tab("Artifacts")
                ui.open_artifact(REPORT_MD)
                ui.find('//h1[starts-with(normalize-space(), "Study report")]', "the rendered REPORT.md")
                set_viewport(driver, width, REPORT_HEIGHT)
                results = ui.find('//h2[starts-with(normalize-space(), "Results")]', "the report's Results section")
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", results)  # the preview pane
                shot("study-report", REPORT_HEIGHT)

            # (f) the lineage: a run's datasets, and the logged models with their metrics on the test dataset
            if contents.model_run is None or contents.test_dataset is None:
                print("note: no run of this experiment logged a model (tracking.log_model): lineage.png not taken")
            else:
                name, digest = contents.test_dataset
                set_viewport(driver, width, HEIGHT)
                ui.open_experiments()
                ui.open_experiment(contents.experiment)
                ui.open_run(contents.model_run)
                drawer = ui.open_datasets(f"{name} ({digest})")
                details = ui.find(f'{drawer}//span[starts-with(normalize-space(), "Digest:")]/..', "the details")
                datasets = (ui.screenshot(Path(tmp) / "datasets.png"), _bottom(ui, [details]) + CROP_MARGIN)
                driver.switch_to.active_element.send_keys(Keys.ESCAPE)
                ui.open_models()
                ui.choose_model_columns(MODEL_COLUMNS_HIDDEN, f"Dataset: {name} (#{digest})", LINEAGE_METRICS)
                for col_id_part, pixels in MODEL_COLUMNS_NARROWED:
                    _widen_columns(ui, col_id_part, pixels)
                rows = driver.find_elements(By.XPATH, '//*[@role="row" and @row-id]')
                models = (ui.screenshot(Path(tmp) / "models.png"), min(HEIGHT, _bottom(ui, rows) + CROP_MARGIN))
                keep(_stack([datasets, models], width, out / "lineage.png"))
        finally:
            driver.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the tracking store, e.g. sqlite:///PATH/mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="folder for the PNGs")
    parser.add_argument(
        "--experiment", help="experiment of the runs table and charts (default: the one with most runs)"
    )
    parser.add_argument("--run", help="run name for the overview and artifacts (default: a finished cce run)")
    parser.add_argument(
        "--study-experiment",
        help="experiment holding the study's parent run (default: --experiment, else any experiment that has one)",
    )
    parser.add_argument(
        "--filter",
        dest="run_filter",
        help="MLflow search filter applied after the runs table's screenshot, for the charts and the "
        "run shown, e.g. 'params.seed = \"0\"'",
    )
    parser.add_argument("--width", type=int, default=WIDTH, help="width of the PNGs in pixels (default 1600)")
    args = parser.parse_args(argv)
    try:
        take_screenshots(
            args.store, args.out, args.experiment, args.run, args.study_experiment, args.run_filter, args.width
        )
    except (BrowserUnavailable, UiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    """Drag the right edge of each table column whose col-id contains `col_id_part`, so that values are not cut."""
    cells = (
        f'//div[@role="columnheader" and contains(@col-id, {xpath_literal(col_id_part)})]'
        '//div[contains(@class, "ag-header-cell-resize")]'
    )
    for index in range(len(ui.driver.find_elements(By.XPATH, cells))):
        handles = ui.driver.find_elements(By.XPATH, cells)  # found again: a resize re-renders the header
        if index < len(handles) and handles[index].is_displayed():
            ActionChains(ui.driver).click_and_hold(handles[index]).move_by_offset(pixels, 0).release().perform()
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
                path = ui.screenshot(out / f"{name}.png")
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

"""Headless Chromium over the MLflow UI: the browser test's driver, and the README's dashboard screenshots.

    python -m xent_lab.screenshots --store sqlite:///PATH/mlflow.db --out docs/screenshots

starts the MLflow UI over the store (`xent_lab.mlflow_server.start_server`), opens it in headless Chromium
as a user would (experiments list -> experiment -> run -> tabs) and saves 1600 px wide PNGs:

    runs-table.png     an experiment's runs table: run names (studies expanded) and a few metric columns
    charts.png         the chart view comparing the runs (those matching --filter): train/ and val/ sections open
    run-overview.png   one run's overview: its description (`mlflow.note.content`), metrics, tags
    run-artifacts.png  the same run's artifacts with plots/reliability_test.png previewed
    study-report.png   a study's parent run (tag xent.role=parent): report/REPORT.md previewed at its Results

`make_driver` and `MlflowUi` are shared with tests/test_ui.py. Chromium and chromedriver are the Debian
packages (`bash .ci/system-packages`); where they are missing, `BrowserUnavailable` says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FIX = "install Chromium and its driver with `bash .ci/system-packages` (Debian packages chromium, chromium-driver)"
WIDTH, HEIGHT = 1600, 1000
# Without the background-networking flags Chromium keeps calling home, and an offline machine refuses it.
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)
PARENT_TAG = "xent.role"  # xent_lab.study: "parent" for a study's parent run, "child" for its jobs
WORKFLOW_KEY = "mlflow.workflowType_v1"  # where the UI keeps its GenAI / Model training switch


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is missing or does not start; the message says how to fix it."""


class UiError(AssertionError):
    """The UI did not show what was expected; the message names the screenshot and page source saved."""


def _xpath_literal(text: str) -> str:
    """`text` as an XPath 1.0 string literal (which has no escapes)."""
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in text.split('"')) + ")"


def require_browser() -> None:
    """Raise BrowserUnavailable, with the fix, when Chromium or chromedriver is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not found; {FIX}")


def make_driver(user_data_dir: Path | str | None = None, width: int = WIDTH, height: int = HEIGHT):
    """Headless Chromium under the system chromedriver, with a viewport of exactly `width` x `height`.

    `user_data_dir`: a fresh profile folder (a new temporary one when None). Raises BrowserUnavailable.
    """
    require_browser()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    profile = Path(user_data_dir) if user_data_dir else Path(tempfile.mkdtemp(prefix="xent-chromium-"))
    for arg in (*CHROMIUM_ARGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        raise BrowserUnavailable(f"Chromium ({CHROMIUM}) did not start under {CHROMEDRIVER}: {exc.msg}; {FIX}") from exc
    set_viewport(driver, width, height)
    return driver


def set_viewport(driver, width: int, height: int) -> None:
    """The page's viewport (and so a screenshot) is exactly width x height CSS pixels at scale 1."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


class MlflowUi:
    """The MLflow 3 UI as a user walks it, with explicit waits.

    Elements are found by their visible text where the UI has one (links, tabs, tree nodes, headings).
    A wait that times out raises UiError naming the screenshot and page source saved in `debug_dir`.
    """

    def __init__(self, driver, base_url: str, debug_dir: Path | str | None = None, timeout: float = 60) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.debug_dir = Path(debug_dir) if debug_dir else Path(tempfile.mkdtemp(prefix="xent-ui-debug-"))
        self.timeout = timeout
        self._failures = 0

    # --- waiting and failing ----------------------------------------------------------------------------

    def fail(self, what: str) -> UiError:
        """A UiError for `what`, after saving a screenshot and the page source for whoever reads it."""
        self._failures += 1
        self.debug_dir.mkdir(parents=True, exist_ok=True)
        stem = self.debug_dir / f"ui-failure-{self._failures}"
        saved = []
        try:
            self.driver.save_screenshot(str(stem.with_suffix(".png")))
            saved.append(f"screenshot {stem.with_suffix('.png')}")
            stem.with_suffix(".html").write_text(self.driver.page_source)
            saved.append(f"page source {stem.with_suffix('.html')}")
            url = self.driver.current_url
        except Exception as exc:  # the browser itself is gone: say so rather than hide the first failure
            url = f"? (browser unreachable: {type(exc).__name__})"
        return UiError(f"{what}\n  at {url}\n  saved: {', '.join(saved) or 'nothing'}")

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float | None = None) -> Any:
        """The first truthy value of `condition(driver)` within the timeout; UiError naming `what` otherwise."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        timeout = self.timeout if timeout is None else timeout
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(condition)
        except TimeoutException:
            raise self.fail(f"timed out after {timeout:.0f} s waiting for {what}") from None

    def find(self, xpath: str, what: str, timeout: float | None = None):
        """The first displayed element matching `xpath`."""
        from selenium.webdriver.common.by import By

        def displayed(driver):
            return next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None)

        return self.wait(displayed, what, timeout)

    def click(self, xpath: str, what: str, timeout: float | None = None):
        """Click the first displayed element matching `xpath`, retried while something covers it."""
        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

        def clicked(driver):
            element = self.find(xpath, what, timeout)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
            try:
                element.click()
            except (ElementClickInterceptedException, StaleElementReferenceException):
                return None
            return element

        return self.wait(clicked, f"{what} to become clickable", timeout)

    # --- navigation ------------------------------------------------------------------------------------

    def open_experiments(self) -> None:
        """The experiments list, in the "Model training" mode, with the assistant's side panel closed."""
        self.driver.get(f"{self.base_url}/#/experiments")
        self.find('//h2[normalize-space()="Experiments"] | //*[@role="heading" and normalize-space()="Experiments"]',
                  'the experiments list (a heading "Experiments")')
        self.find('//*[@role="row" and .//a]', "the experiments table to list an experiment")
        self._close_assistant()
        if self.driver.execute_script(f"return localStorage.getItem('{WORKFLOW_KEY}')") != '"machine_learning"':
            self.click('//*[@role="button" and normalize-space()="Model training"]', 'the "Model training" switch')
            self.wait(lambda d: d.execute_script(f"return localStorage.getItem('{WORKFLOW_KEY}')")
                      == '"machine_learning"', 'the UI to switch to "Model training"', 10)
            self.find('//*[@role="row" and .//a]', "the experiments table after the switch to Model training")

    def _close_assistant(self, appear_within: float = 5) -> None:
        """MLflow 3.x opens its "MLflow Assistant" side panel on the first visit; it takes a third of the width.

        Closed once, it stays closed (MLflow remembers it in the browser's local storage).
        """
        from selenium.webdriver.common.by import By

        close = ('//*[text()[normalize-space()="MLflow Assistant"]]/ancestor::*[.//button[@aria-label="Close"]][1]'
                 '//button[@aria-label="Close"]')

        def shown(driver):
            return next((b for b in driver.find_elements(By.XPATH, close) if b.is_displayed()), None)

        deadline = time.monotonic() + appear_within
        while time.monotonic() < deadline:
            button = shown(self.driver)
            if button is not None:
                button.click()
                self.wait(lambda driver: shown(driver) is None, "the MLflow Assistant panel to close", 10)
                return
            time.sleep(0.25)

    def open_experiment(self, name: str) -> None:
        """From the experiments list, the experiment's runs table."""
        self.click(f'//*[@role="row"]//a[normalize-space()={_xpath_literal(name)}]',
                   f"a link to the experiment {name!r} in the experiments list")
        self.find('//span[contains(normalize-space(), "matching run")]',
                  f"the runs table of experiment {name!r} (its 'N matching runs' footer)")
        self.find('//*[@role="row" and @row-id]', f"a run in the runs table of experiment {name!r}")

    def filter_runs(self, query: str) -> None:
        """Type an MLflow search filter (e.g. `params.seed = "0"`) into the runs search box and run it."""
        from selenium.webdriver.common.keys import Keys

        box = self.find('//input[@data-testid="search-box"]', "the runs search box")
        box.click()
        box.send_keys(query)
        box.send_keys(Keys.ENTER)
        self.wait(lambda d: "searchFilter=" in d.current_url and "searchFilter=&" not in d.current_url,
                  f"the runs filter {query!r} to apply", 20)
        self.find('//*[@role="row" and @row-id]', f"a run matching the filter {query!r}")

    def run_link(self, run_name: str) -> str:
        """XPath of the run's link in the runs table (its name, as displayed)."""
        return f'//*[@role="row" and @row-id]//a[normalize-space()={_xpath_literal(run_name)}]'

    def open_run(self, run_name: str) -> None:
        """From the runs table, the run's page (its Overview tab)."""
        self.click(self.run_link(run_name), f"the run {run_name!r} in the runs table")
        self.find(f'//*[@data-testid="runs-header" and normalize-space()={_xpath_literal(run_name)}]'
                  f' | //h2[normalize-space()={_xpath_literal(run_name)}]', f"the page of run {run_name!r}")
        self.find('//*[@role="tab" and normalize-space()="Overview"]', "the run page's tabs")

    def open_tab(self, label: str) -> None:
        """A tab of the run page: Overview, Model metrics, System metrics, Traces, Artifacts."""
        self.click(f'//*[@role="tab" and normalize-space()={_xpath_literal(label)}]', f"the {label!r} tab")
        self.find(f'//*[@role="tab" and @aria-selected="true" and normalize-space()={_xpath_literal(label)}]',
                  f"the {label!r} tab to be selected")

    def open_artifact(self, path: str) -> None:
        """In the Artifacts tab, open each folder of `path` in the tree and select the file."""
        parts = path.split("/")
        for depth, part in enumerate(parts):
            kind = "file" if depth == len(parts) - 1 else "folder"
            self.click(f'//*[@data-testid="artifact-tree-node" and normalize-space()={_xpath_literal(part)}]',
                       f"the artifact {kind} {'/'.join(parts[: depth + 1])!r} in the artifact tree")
        self.find(f'//*[normalize-space()={_xpath_literal(path)} and @title={_xpath_literal(path)}]',
                  f"the preview header of artifact {path!r}")

    def image_preview(self, path: str, timeout: float | None = None) -> int:
        """The natural width of the artifact image previewed for `path`: it downloaded and decoded."""
        from selenium.webdriver.common.by import By

        selector = f"img[alt={_css_string(path)}]"

        def loaded(driver):
            for image in driver.find_elements(By.CSS_SELECTOR, selector):
                width = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
                if width:
                    return width
            return None

        return self.wait(loaded, f"the image preview of {path!r} ({selector} with naturalWidth > 0)", timeout)

    def wait_for_charts(self, timeout: float | None = None) -> None:
        """At least one chart drawn, and no spinner left in the viewport (charts load as they scroll in)."""
        script = """
            const inView = e => { const r = e.getBoundingClientRect();
                return r.width > 0 && r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; };
            const spinners = [...document.querySelectorAll('[class*="spin-dot"], [class*="spinner"]')].filter(inView);
            const charts = [...document.querySelectorAll('svg.main-svg')].filter(inView);
            return charts.length > 0 && spinners.length === 0;"""
        self.wait(lambda driver: driver.execute_script(script), "the charts in view to finish loading", timeout)

    def park_mouse(self) -> None:
        """Move the mouse to the page's top-right corner, so that no hover effect shows in a screenshot."""
        width = self.driver.execute_script("return innerWidth")
        self.driver.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": width - 2, "y": 2})

    def screenshot(self, path: Path | str, settle: float = 1.0) -> Path:
        """A PNG of the viewport, mouse parked, after `settle` seconds for animations to end."""
        self.park_mouse()
        time.sleep(settle)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise self.fail(f"Chromium could not write the screenshot {path}")
        return path


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the README's screenshots -------------------------------------------------------------------------------

# Comparable across losses: a run's `loss` is the value of its own loss function, its NLL is the same measure.
TABLE_METRICS = ("test/accuracy", "test/nll", "test/ece", "test/ece_ts", "test/brier")
HIDDEN_COLUMNS = ("Dataset", "Source", "Models")
COLLAPSED_SECTIONS = ("perf", "test", "test/recall")
CHARTS_HEIGHT = 1590  # the train/ row and two rows of val/ (accuracy ... brier, classwise_ece ... ece)
REPORT_HEIGHT = 1300  # the report's "Results" tables


def _choose_columns(ui: MlflowUi, metrics: tuple[str, ...], available: set[str]) -> None:
    """Columns menu: show `metrics` (those the runs have), hide the attribute columns that stay empty here."""
    from selenium.webdriver.common.keys import Keys

    ui.click('//button[normalize-space()="Columns"]', 'the "Columns" menu')
    for name in (*[m for m in metrics if m in available], *HIDDEN_COLUMNS):
        ui.click(f'//span[@title={_xpath_literal(name)}]', f"the column {name!r} in the Columns menu")
    ui.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    ui.wait(lambda d: not d.find_elements("xpath", '//input[@placeholder="Search columns"]') or
            not any(e.is_displayed() for e in d.find_elements("xpath", '//input[@placeholder="Search columns"]')),
            "the Columns menu to close", 10)


def _widen_columns(ui: MlflowUi, col_id_part: str, pixels: int) -> None:
    """Drag the right edge of each table column whose col-id contains `col_id_part`, so that values are not cut."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    cells = (f'//div[@role="columnheader" and contains(@col-id, {_xpath_literal(col_id_part)})]'
             '//div[contains(@class, "ag-header-cell-resize")]')
    for index in range(len(ui.driver.find_elements(By.XPATH, cells))):
        handles = ui.driver.find_elements(By.XPATH, cells)  # found again: a resize re-renders the header
        if index < len(handles) and handles[index].is_displayed():
            ActionChains(ui.driver).click_and_hold(handles[index]).move_by_offset(pixels, 0).release().perform()
            time.sleep(0.2)


def _widen_runs_panel(ui: MlflowUi, pixels: int = 140) -> None:
    """In the chart view, drag the edge of the runs list beside the charts, so that run names are not cut."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    handles = ui.driver.find_elements(By.CSS_SELECTOR, '.react-resizable > [handleaxis="e"]')  # 0 px wide
    if handles:
        drag = ActionChains(ui.driver).move_to_element(handles[0]).click_and_hold()
        for _ in range(4):  # in steps, as a hand would: the resizer follows mouse moves
            drag = drag.move_by_offset(pixels // 4, 0)
        drag.release().perform()


def _expand_studies(ui: MlflowUi) -> None:
    """Expand every parent run in the table, so that its children (the study's jobs) are listed."""
    from selenium.webdriver.common.by import By

    for _ in range(20):
        buttons = [b for b in ui.driver.find_elements(
            By.XPATH, '//*[@role="row"]//*[contains(@col-id, "Run Name")]//button[.//*[local-name()="svg"]]')
            if b.is_displayed() and "runnamecellrenderer" in (b.get_attribute("data-component-id") or "")]
        collapsed = [b for b in buttons if "M7.25 7.25V4.5" in (b.get_attribute("innerHTML") or "")]  # the "+" icon
        if not collapsed:
            return
        collapsed[0].click()
        time.sleep(0.5)


def _collapse_sections(ui: MlflowUi, sections: tuple[str, ...]) -> None:
    from selenium.webdriver.common.by import By

    for section in sections:
        header = (f'//*[@data-testid="experiment-view-compare-runs-section-header"]'
                  f'[.//div[normalize-space(text())={_xpath_literal(section)}]]')
        for element in ui.driver.find_elements(By.XPATH, header):
            toggle = element.find_element(By.XPATH, './ancestor::*[@aria-expanded][1]')
            if toggle.get_attribute("aria-expanded") == "true":
                ui.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
                toggle.click()
                time.sleep(0.3)


def _hide_in_charts(ui: MlflowUi, run_ids: list[str]) -> None:
    """Untick the eye of runs that have no metrics of their own (a study's parent run) in the chart view."""
    from selenium.webdriver.common.by import By

    for run_id in run_ids:
        if not ui.driver.find_elements(By.XPATH, f'//*[@role="row" and @row-id="{run_id}"]'):
            continue  # not listed
        ui.click(f'//*[@role="row" and @row-id="{run_id}"]//label[.//*[normalize-space()="Hide run"]]',
                 f"the 'Hide run' eye of run {run_id}")


def _scroll_all_to_top(ui: MlflowUi) -> None:
    ui.driver.execute_script("document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })")


def _compress(path: Path, limit: int) -> None:
    """Re-encode a PNG over `limit` bytes with a 256-colour palette (screenshots of flat UI lose nothing visible)."""
    if path.stat().st_size <= limit:
        return
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


class StoreContents:
    """What to photograph in a store: the experiment, one run of it, and a study's parent run."""

    def __init__(self, store: str, experiment: str | None, run: str | None, study_experiment: str | None,
                 run_filter: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

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
        # All of them: the UI lists a parent run beside its children that match a filter, even when it does not.
        self.parent_ids = [r.info.run_id for r in runs_of[experiment] if r.data.tags.get(PARENT_TAG) == "parent"]
        self.metrics = {key for r in self.runs for key in r.data.metrics}
        jobs = sorted((r for r in self.runs if r.data.tags.get(PARENT_TAG) != "parent" and r.info.status == "FINISHED"),
                      key=lambda r: r.info.run_name)
        if run is None:
            preferred = [r for r in jobs if r.data.tags.get("loss") == "cce" and r.data.tags.get("mlflow.note.content")]
            if not (preferred or jobs):
                raise SystemExit(f"error: experiment {experiment!r} has no finished run to show")
            run = (preferred or jobs)[0].info.run_name
        elif run not in {r.info.run_name for r in self.runs}:
            raise SystemExit(f"error: experiment {experiment!r} has no run named {run!r}"
                             + (f" that matches the filter {run_filter!r}" if run_filter else ""))
        self.run = run
        self.run_has_note = any(r.data.tags.get("mlflow.note.content") for r in self.runs if r.info.run_name == run)
        # The study: a parent run in study_experiment, else in the experiment shown, else anywhere.
        order = [study_experiment] if study_experiment else [experiment, *sorted(runs_of)]
        self.study: tuple[str, str] | None = None
        for name in order:
            if name not in runs_of:
                raise SystemExit(f"error: no experiment {name!r} in {store}; it has {sorted(runs_of)}")
            parents = [r for r in runs_of[name] if r.data.tags.get(PARENT_TAG) == "parent"
                       and any(a.path == "report" for a in client.list_artifacts(r.info.run_id))]
            if parents:
                latest = max(parents, key=lambda r: r.info.start_time)
                self.study = (name, latest.info.run_name)
                break


def take_screenshots(store: str, out: Path, experiment: str | None = None, run: str | None = None,
                     study_experiment: str | None = None, run_filter: str | None = None, width: int = WIDTH,
                     max_bytes: int = 400_000) -> list[Path]:
    """Start the UI over `store` and write the screenshots (see the module's doc) into `out`; returns their paths.

    `run_filter`: an MLflow search filter typed into the runs search box after the table's screenshot, so that
    the charts compare fewer runs; the run shown is then one that matches it.
    """
    from xent_lab.mlflow_server import start_server

    contents = StoreContents(store, experiment, run, study_experiment, run_filter)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="xent-shots-") as tmp, \
            start_server(store, Path(tmp) / "mlartifacts") as server:
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
            rows = len(set(driver.execute_script(
                "return [...document.querySelectorAll('[role=row][row-id]')].map(r => r.getAttribute('row-id'))")))
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
            ui.open_artifact("plots/reliability_test.png")
            ui.image_preview("plots/reliability_test.png")
            shot("run-artifacts", HEIGHT)

            # (e) a study's parent run and its report
            if contents.study is None:
                print("note: no run with tag xent.role=parent and a report/ folder in this store: "
                      "study-report.png not taken", flush=True)
            else:
                parent_experiment, parent = contents.study
                ui.open_experiments()
                ui.open_experiment(parent_experiment)
                ui.open_run(parent)
                ui.open_tab("Artifacts")
                ui.open_artifact("report/REPORT.md")
                ui.find('//h1[starts-with(normalize-space(), "Study report")]', "the rendered REPORT.md")
                set_viewport(driver, width, REPORT_HEIGHT)
                results = ui.find('//h2[starts-with(normalize-space(), "Results")]', "the report's Results section")
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", results)  # the preview pane
                shot("study-report", REPORT_HEIGHT)
        finally:
            driver.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xent_lab.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the tracking store, e.g. sqlite:///PATH/mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="folder for the PNGs")
    parser.add_argument("--experiment",
                        help="experiment of the runs table and charts (default: the one with most runs)")
    parser.add_argument("--run", help="run name for the overview and artifacts (default: a finished cce run)")
    parser.add_argument("--study-experiment", help="experiment holding the study's parent run (default: --experiment, "
                                                   "else any experiment that has one)")
    parser.add_argument("--filter", dest="run_filter",
                        help="MLflow search filter applied after the runs table's screenshot, for the charts and the "
                             "run shown, e.g. 'params.seed = \"0\"'")
    parser.add_argument("--width", type=int, default=WIDTH, help="width of the PNGs in pixels (default 1600)")
    args = parser.parse_args(argv)
    try:
        take_screenshots(args.store, args.out, args.experiment, args.run, args.study_experiment, args.run_filter,
                         args.width)
    except (BrowserUnavailable, UiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

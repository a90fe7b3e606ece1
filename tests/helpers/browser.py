"""Headless Chromium over the MLflow UI: the driver of tests/test_ui.py and of the README's screenshots.

`make_driver` starts the system Chromium under the system chromedriver with an exact viewport; `MlflowUi`
walks the MLflow 3 UI as a user would (experiments list -> experiment -> run -> tabs) with explicit waits.
Chromium and chromedriver are the Debian packages (`bash .ci/system-packages`); where they are missing,
`BrowserUnavailable` says so. The screenshot maker built on it is `python -m tools.screenshots`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FIX = "install Chromium and its driver with `bash .ci/system-packages` (Debian packages chromium, chromium-driver)"
WIDTH, HEIGHT = 1600, 1000
# Without the background-networking flags Chromium keeps calling home, and an offline machine refuses it.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WORKFLOW_KEY = "mlflow.workflowType_v1"  # where the UI keeps its GenAI / Model training switch


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is missing or does not start; the message says how to fix it."""


class UiError(AssertionError):
    """The UI did not show what was expected; the message names the screenshot and page source saved."""


def xpath_literal(text: str) -> str:
    """`text` as an XPath 1.0 string literal (which has no escapes)."""
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in text.split('"')) + ")"


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def require_browser() -> None:
    """Raise BrowserUnavailable, with the fix, when Chromium or chromedriver is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not found; {FIX}")


def make_driver(user_data_dir: Path | str | None = None, width: int = WIDTH, height: int = HEIGHT) -> Chrome:
    """Headless Chromium under the system chromedriver, with a viewport of exactly `width` x `height`.

    `user_data_dir`: a fresh profile folder (a new temporary one when None). Raises BrowserUnavailable.
    """
    require_browser()
    options = Options()
    options.binary_location = CHROMIUM
    profile = Path(user_data_dir) if user_data_dir else Path(tempfile.mkdtemp(prefix="xent-chromium-"))
    for arg in (*CHROMIUM_ARGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    try:
        driver = Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        raise BrowserUnavailable(f"Chromium ({CHROMIUM}) did not start under {CHROMEDRIVER}: {exc.msg}; {FIX}") from exc
    set_viewport(driver, width, height)
    return driver


def set_viewport(driver: Chrome, width: int, height: int) -> None:
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

    def __init__(self, driver: Chrome, base_url: str, debug_dir: Path | str | None = None, timeout: float = 60) -> None:
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

    def wait(self, condition: Callable[[Chrome], Any], what: str, timeout: float | None = None) -> Any:
        """The first truthy value of `condition(driver)` within the timeout; UiError naming `what` otherwise."""
        timeout = self.timeout if timeout is None else timeout
        try:
            # A stale element (the page re-rendered it between finding and reading it): look again.
            wait = WebDriverWait(self.driver, timeout, 0.25, ignored_exceptions=(StaleElementReferenceException,))
            return wait.until(condition)
        except TimeoutException:
            raise self.fail(f"timed out after {timeout:.0f} s waiting for {what}") from None

    def find(self, xpath: str, what: str, timeout: float | None = None) -> WebElement:
        """The first displayed element matching `xpath`."""

        def displayed(driver: Chrome) -> WebElement | None:
            return next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None)

        return self.wait(displayed, what, timeout)

    def click(self, xpath: str, what: str, timeout: float | None = None) -> WebElement:
        """Click the first displayed element matching `xpath`, retried while something covers it."""

        def clicked(driver: Chrome) -> WebElement | None:
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
        self.find(
            '//h2[normalize-space()="Experiments"] | //*[@role="heading" and normalize-space()="Experiments"]',
            'the experiments list (a heading "Experiments")',
        )
        self.find('//*[@role="row" and .//a]', "the experiments table to list an experiment")
        self._close_assistant()
        if self.driver.execute_script(f"return localStorage.getItem('{WORKFLOW_KEY}')") != '"machine_learning"':
            self.click('//*[@role="button" and normalize-space()="Model training"]', 'the "Model training" switch')
            self.wait(
                lambda d: d.execute_script(f"return localStorage.getItem('{WORKFLOW_KEY}')") == '"machine_learning"',
                'the UI to switch to "Model training"',
                10,
            )
            self.find('//*[@role="row" and .//a]', "the experiments table after the switch to Model training")

    def _close_assistant(self, appear_within: float = 5) -> None:
        """MLflow 3.x opens its "MLflow Assistant" side panel on the first visit; it takes a third of the width.

        Closed once, it stays closed (MLflow remembers it in the browser's local storage).
        """
        close = (
            '//*[text()[normalize-space()="MLflow Assistant"]]/ancestor::*[.//button[@aria-label="Close"]][1]'
            '//button[@aria-label="Close"]'
        )

        def shown(driver: Chrome) -> WebElement | None:
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
        self.click(
            f'//*[@role="row"]//a[normalize-space()={xpath_literal(name)}]',
            f"a link to the experiment {name!r} in the experiments list",
        )
        self.find(
            '//span[contains(normalize-space(), "matching run")]',
            f"the runs table of experiment {name!r} (its 'N matching runs' footer)",
        )
        self.find('//*[@role="row" and @row-id]', f"a run in the runs table of experiment {name!r}")

    def filter_runs(self, query: str) -> None:
        """Type an MLflow search filter (e.g. `params.seed = "0"`) into the runs search box and run it."""
        box = self.find('//input[@data-testid="search-box"]', "the runs search box")
        box.click()
        box.send_keys(query)
        box.send_keys(Keys.ENTER)
        self.wait(
            lambda d: "searchFilter=" in d.current_url and "searchFilter=&" not in d.current_url,
            f"the runs filter {query!r} to apply",
            20,
        )
        self.find('//*[@role="row" and @row-id]', f"a run matching the filter {query!r}")

    def run_link(self, run_name: str) -> str:
        """XPath of the run's link in the runs table (its name, as displayed)."""
        return f'//*[@role="row" and @row-id]//a[normalize-space()={xpath_literal(run_name)}]'

    def open_run(self, run_name: str) -> None:
        """From the runs table, the run's page (its Overview tab)."""
        self.click(self.run_link(run_name), f"the run {run_name!r} in the runs table")
        self.find(
            f'//*[@data-testid="runs-header" and normalize-space()={xpath_literal(run_name)}]'
            f" | //h2[normalize-space()={xpath_literal(run_name)}]",
            f"the page of run {run_name!r}",
        )
        self.find('//*[@role="tab" and normalize-space()="Overview"]', "the run page's tabs")

    def open_tab(self, label: str) -> None:
        """A tab of the run page: Overview, Model metrics, System metrics, Traces, Artifacts."""
        self.click(f'//*[@role="tab" and normalize-space()={xpath_literal(label)}]', f"the {label!r} tab")
        self.find(
            f'//*[@role="tab" and @aria-selected="true" and normalize-space()={xpath_literal(label)}]',
            f"the {label!r} tab to be selected",
        )

    def open_artifact(self, path: str) -> None:
        """In the Artifacts tab, open each folder of `path` in the tree and select the file."""
        parts = path.split("/")
        for depth, part in enumerate(parts):
            kind = "file" if depth == len(parts) - 1 else "folder"
            self.click(
                f'//*[@data-testid="artifact-tree-node" and normalize-space()={xpath_literal(part)}]',
                f"the artifact {kind} {'/'.join(parts[: depth + 1])!r} in the artifact tree",
            )
        self.find(
            f"//*[normalize-space()={xpath_literal(path)} and @title={xpath_literal(path)}]",
            f"the preview header of artifact {path!r}",
        )

    def open_datasets(self, label: str) -> str:
        """On a run's Overview, its "Data details" drawer (every dataset the run used), with the dataset
        `label` ("name (digest)", as listed) selected; returns the drawer's XPath."""
        self.click(
            '//h4[normalize-space()="Datasets"]/following-sibling::*//*[@role="button"]',
            'a dataset in the "Datasets" of the run\'s overview',
        )
        drawer = '//*[@role="dialog" and .//*[normalize-space()="Data details for"]]'
        self.find(drawer, 'the "Data details for" drawer of the run')
        self.click(f"{drawer}//*[@role='button' and @aria-label={xpath_literal(label)}]", f"{label!r} in the drawer")
        name = label.rsplit(" (", 1)[0]
        self.find(f"{drawer}//h3[normalize-space()={xpath_literal(name)}]", f"the details of dataset {name!r}")
        return drawer

    def open_models(self) -> None:
        """From an experiment's runs table, its "Models" page: the logged models, their source runs and metrics."""
        self.click('//a[normalize-space()="Models"]', 'the experiment\'s "Models" link in the side bar')
        self.find('//h2[normalize-space()="Models"]', 'the experiment\'s "Models" page')
        self.find('//*[@role="row" and @row-id]', "a logged model in the Models table")

    def choose_model_columns(self, untick: tuple[str, ...], group: str, tick: tuple[str, ...]) -> None:
        """On the Models page, the "Columns" menu (a tree of checkboxes): untick the columns or groups titled
        `untick`, open the group `group` and tick its columns `tick`; then close the menu."""
        self.click('//button[normalize-space()="Columns"]', 'the "Columns" menu of the Models page')

        def node(title: str) -> str:
            return f'//div[contains(@class, "tree-treenode")][.//span[@title={xpath_literal(title)}]]'

        box = '//span[contains(@class, "tree-checkbox") and not(contains(@class, "tree-checkbox-inner"))]'
        for title in untick:
            self.click(node(title) + box, f"the checkbox of {title!r} in the Columns menu")
        self.click(node(group) + '//span[contains(@class, "tree-switcher")]', f"the group {group!r} to open")
        for title in tick:
            self.click(node(title) + box, f"the checkbox of {title!r} in the group {group!r}")
        self.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        self.wait(
            lambda d: not any(e.is_displayed() for e in d.find_elements(By.XPATH, '//*[@role="tree"]')),
            "the Columns menu to close",
            10,
        )
        first = f'//*[@role="columnheader" and normalize-space()={xpath_literal(tick[0])}]'
        self.find(first, f"the column {tick[0]!r} in the table")

    def model_metric(self, run_name: str, metric: str) -> str:
        """On the Models page, the text of the `metric` cell of the model logged by the run `run_name`."""
        row = self.find(
            f'//*[@role="row" and @row-id][.//a[normalize-space()={xpath_literal(run_name)}]]',
            f"the model logged by run {run_name!r} in the Models table",
        )
        header = self.find(
            f'//*[@role="columnheader" and normalize-space()={xpath_literal(metric)}]', f"the column {metric!r}"
        )
        # The grid draws a row in two parts (pinned name, scrolled cells) that share its row-id, and escapes the
        # cells' col-id, not the header's: the column is its ARIA index.
        cell = (
            f'//*[@role="row" and @row-id={xpath_literal(row.get_attribute("row-id"))}]'
            f'//*[@role="gridcell" and @aria-colindex="{header.get_attribute("aria-colindex")}"]'
        )
        return self.find(cell, f"the {metric} cell of the model of run {run_name!r}").text

    def image_preview(self, path: str, timeout: float | None = None) -> int:
        """The natural width of the artifact image previewed for `path`: it downloaded and decoded."""
        selector = f"img[alt={_css_string(path)}]"

        def loaded(driver: Chrome) -> int | None:
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

    # --- screenshots -----------------------------------------------------------------------------------

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

"""Open a report in headless Chromium and read back what it drew.

Uses selenium with the system's Chromium and chromedriver (the Debian packages
``chromium`` and ``chromium-driver``); nothing is downloaded: the driver path
is passed explicitly, so selenium-manager never runs. :func:`find_chromium`
says whether a browser is there; :func:`open_report` loads a file, waits until
the page reports every chart drawn, and returns the timings, the browser's
console errors, the number of data points per trace of every chart (read from
plotly's computed data in the page) a PNG screenshot of the
viewport and one of the first chart.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserResult", "find_chromium", "open_report"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
DRIVER_FOLDERS = ("/usr/bin", "/usr/lib/chromium", "/usr/lib/chromium-browser")

# Per chart: the points of every trace. A scatter trace counts its points with finite y,
# a heatmap its finite cells.
COUNT_POINTS = """
return Array.from(document.querySelectorAll('div.chart')).map(function(gd){
  return (gd.calcdata || []).map(function(trace){
    if (trace.length && trace[0].z) {
      var cells = 0;
      trace[0].z.forEach(function(row){ row.forEach(function(v){
        if (typeof v === 'number' && isFinite(v)) cells++; }); });
      return cells;
    }
    return trace.filter(function(point){
      return typeof point.y === 'number' && isFinite(point.y); }).length;
  });
});
"""


@dataclass
class BrowserResult:
    """What the browser saw; times in seconds."""

    ready: bool
    charts: int
    load_seconds: float
    render_seconds: float
    wall_seconds: float
    cpu_seconds: float = float("nan")
    points: list[list[int]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot_png: bytes = b""
    chart_screenshot_png: bytes = b""


def _tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) of ``root`` and all its descendants, from /proc (Linux);
    NaN elsewhere."""
    proc = Path("/proc")
    if not proc.is_dir():
        return float("nan")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    family = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return sum(times.get(pid, 0) for pid in family) / ticks


def find_chromium() -> tuple[str, str] | None:
    """Paths of a Chromium binary and its chromedriver, or None when either is missing.

    ``EMARL_CHROMIUM`` and ``EMARL_CHROMEDRIVER`` override the search.
    """
    browser = os.environ.get("EMARL_CHROMIUM") or next(
        (found for name in BROWSERS if (found := shutil.which(name))), None
    )
    driver = os.environ.get("EMARL_CHROMEDRIVER") or next(
        (found for name in DRIVERS if (found := shutil.which(name))), None
    )
    if driver is None:
        for folder in DRIVER_FOLDERS:
            candidate = Path(folder) / "chromedriver"
            if candidate.exists():
                driver = str(candidate)
                break
    if browser is None or driver is None:
        return None
    return browser, driver


def open_report(
    path: str | Path,
    *,
    browser: tuple[str, str] | None = None,
    timeout: float = 60.0,
    width: int = 1400,
    height: int = 1000,
) -> BrowserResult:
    """Load ``path`` in headless Chromium and wait for ``window.emarlReport.ready``.

    ``load_seconds`` is from navigation start to the page's load event,
    ``render_seconds`` from navigation start to the last chart drawn, and
    ``wall_seconds`` the time the driver's ``get`` plus the wait took, and
    ``cpu_seconds`` the CPU time all browser processes used meanwhile (on a busy
    machine the open time grows; this does not, much).
    Raises ``RuntimeError`` when no browser is found.
    """
    # selenium is a test dependency: it loads only when a report is opened in a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    found = browser or find_chromium()
    if found is None:
        raise RuntimeError(
            "no Chromium and chromedriver found (apt-get install chromium chromium-driver)"
        )
    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--allow-file-access-from-files",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(timeout)
        url = Path(path).resolve().as_uri()
        driver_pid = driver.service.process.pid
        cpu_before = _tree_cpu_seconds(driver_pid)
        started = time.perf_counter()
        driver.get(url)
        state: dict[str, Any] | None = None
        while time.perf_counter() - started < timeout:
            state = driver.execute_script("return window.emarlReport || null;")
            if state is not None:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
        cpu = _tree_cpu_seconds(driver_pid) - cpu_before
        timing = driver.execute_script(
            "var t = performance.timing; return [t.navigationStart, t.loadEventEnd];"
        )
        ready = bool(state and state.get("ready"))
        points = driver.execute_script(COUNT_POINTS) if ready else []
        driver.execute_script("window.scrollTo(0, 0);")
        screenshot = driver.get_screenshot_as_png()
        charts = driver.find_elements(By.CSS_SELECTOR, "div.chart")
        chart_screenshot = b""
        if charts:
            driver.execute_script("arguments[0].scrollIntoView();", charts[0])
            chart_screenshot = charts[0].screenshot_as_png
        errors = [
            entry["message"]
            for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
            if entry.get("level") in ("SEVERE", "ERROR")
        ]
        return BrowserResult(
            ready=ready,
            charts=int(state.get("charts", 0)) if state else 0,
            load_seconds=max(0.0, (timing[1] - timing[0]) / 1000.0),
            render_seconds=float(state.get("readyAtMs", 0.0)) / 1000.0 if state else 0.0,
            wall_seconds=wall,
            cpu_seconds=cpu,
            points=[[int(count) for count in chart] for chart in points],
            console_errors=errors,
            screenshot_png=screenshot,
            chart_screenshot_png=chart_screenshot,
        )
    finally:
        driver.quit()

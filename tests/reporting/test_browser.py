"""Reports opened in a real headless Chromium (the system browser, driven by selenium).

Skips with a reason when no Chromium/chromedriver is installed, and fails instead
under ``EMARL_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from reporting import write_report
from reporting.browser import BrowserResult, find_chromium, open_report
from storage.db import connect
from tests.conftest import service_unavailable
from tests.reporting.conftest import figures_of

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        service_unavailable("selenium is not installed (pip install -e '.[test]')")
    found = find_chromium()
    if found is None:
        service_unavailable(
            "no headless browser: apt-get install chromium chromium-driver for the report tests"
        )
    assert found is not None
    return found


def pixel_spread(png: bytes) -> float:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(image.std())


@pytest.mark.parametrize("run_id", [1, 2])
def test_report_opens_in_chromium_with_every_chart_drawn(
    report_db: str, tmp_path: Path, browser: tuple[str, str], run_id: int
) -> None:
    path = write_report(connect(report_db, create=False), run_id, tmp_path / "r.html")
    expected = figures_of(path.read_text())
    seen: BrowserResult = open_report(path, browser=browser)
    assert seen.ready, "the page never reported its charts drawn"
    assert seen.console_errors == []
    assert seen.charts == len(expected) == len(seen.points)
    for (title, figure), counts in zip(expected.items(), seen.points, strict=True):
        assert len(counts) == len(figure["data"]), title
        assert all(count > 0 for count in counts), (title, counts)
    assert pixel_spread(seen.screenshot_png) > 5.0
    assert pixel_spread(seen.chart_screenshot_png) > 5.0


def test_browser_check_sees_a_broken_page(tmp_path: Path, browser: tuple[str, str]) -> None:
    """The checks above can fail: a page whose script throws and draws nothing."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body style='background:#fff'>"
        "<script>window.emarlReport = {ready: false}; undefinedFunction();</script>"
        "</body></html>"
    )
    seen = open_report(page, browser=browser, timeout=10)
    assert not seen.ready
    assert any("undefinedFunction" in message for message in seen.console_errors)
    assert pixel_spread(seen.screenshot_png) < 1.0

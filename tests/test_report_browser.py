"""`batchrun report` in a real browser: Chromium, headless, from disk, with the network off.

`.ci/run` installs Debian's `chromium` and `chromium-driver`; the test is
skipped only where they are missing and cannot be installed (not root).
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest
from conftest import run_batchrun
from test_report import HOSTILE, report_runfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.geteuid() == 0:
        # Root can install them (as .ci/run does): a missing browser here is a broken set-up, not a skip.
        pytest.fail("chromium and chromedriver are missing: apt-get install -y chromium chromium-driver (as .ci/run does)", pytrace=False)
    pytest.skip("Chromium is not installed and cannot be installed without root (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

# The flags this machine's Chromium needs headless, and nothing that reaches out to the network.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,3000",
          # Any request the page made would go to a closed port: the report must need none.
          "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>")


def start_chromium(flags: tuple[str, ...], profile: Path):  # type: ignore[no-untyped-def]
    """Headless Chromium through its chromedriver, logging the page's console."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in flags:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


@pytest.fixture()
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    driver = start_chromium(_FLAGS, tmp_path / "chromium-profile")
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw scanlines of a PNG (enough to tell a blank picture from a drawn one)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_report_draws_every_run_offline(workdir: Path, browser) -> None:  # type: ignore[no-untyped-def]
    _, runs, with_loss = report_runfile(workdir)
    assert run_batchrun("report", "exp.runfile", cwd=workdir).returncode == 0
    browser.get((workdir / "report.html").as_uri())
    wait_until(browser, "return window.batchrunReportReady === true")
    # Nothing the user wrote ran: not the </script><script> command, not the <img onerror> metric name.
    assert browser.execute_script("return window.pwned === undefined")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    # Parallel coordinates: one line per run with a loss, over the 3 parameters, the other metric and the metric.
    dims = browser.execute_script("return window.batchrunSweep.pc.spec.dims.map(function (d) { return [d.name, d.values.length]; })")
    assert [n for _, n in dims] == [with_loss] * 5 and [name for name, _ in dims][:3] == ["opt", "lr", "seed"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#parcoords .pc-axis")) == 5 and browser.find_elements(By.CSS_SELECTOR, "#parcoords canvas")
    ticks = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#parcoords .pc-axis')[0].querySelectorAll('text.tick'), function (t) { return t.textContent; })")
    assert sorted(ticks) == sorted([HOSTILE, "adam", "sgd"])  # shown as the user wrote it
    # The seed is a whole number: integer ticks only.
    seed_ticks = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#parcoords .pc-axis')[2].querySelectorAll('text.tick'), function (t) { return t.textContent; })")
    assert seed_ticks == ["1", "2"]
    # The metric against each parameter: one drawn marker per run, in each of the 3 subplots.
    points = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#scatters .scatterlayer .trace'), function (t) { return t.querySelectorAll('path.point').length; })")
    assert points == [with_loss] * 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bestsofar .scatterlayer .trace:first-child path.point")) == with_loss
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history .scatterlayer .trace")) == min(20, with_loss)
    # The table holds every run, and sorts when a header is clicked; the hostile command is text.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == runs
    assert any(HOSTILE in cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#runs tbody td .cmd"))
    line_header = browser.find_elements(By.CSS_SELECTOR, "#runs th")[0]
    line_header.click()
    wait_until(browser, "return document.querySelector('#runs th').className === 'sorted-desc'")
    assert browser.find_element(By.CSS_SELECTOR, "#runs tbody tr td").text == str(runs)
    # Importance and the groups over the seed are drawn.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#importance .barlayer .point")) == 6
    assert len(browser.find_elements(By.CSS_SELECTOR, ".br-groups tr")) == 1 + 7
    assert "diverged: lr 0.9 is too high" in browser.find_element(By.CSS_SELECTOR, ".failed pre").text
    # A screenshot that is not blank: many distinct byte values, not one background colour.
    png = browser.get_screenshot_as_png()
    keep = os.environ.get("BATCHRUN_REPORT_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(png)
    width, height, pixels = _png_pixels(png)
    assert (width, height) == tuple(browser.execute_script("return [window.innerWidth * devicePixelRatio, window.innerHeight * devicePixelRatio]"))
    assert len(set(pixels)) > 50
    white = pixels.count(b"\xff\xff\xff")
    assert white < 0.97 * width * height


def wait_until(browser, script: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until `script` returns true in the page (drawing is asynchronous)."""
    deadline = time.monotonic() + timeout
    while not browser.execute_script(script):
        if time.monotonic() > deadline:
            page = browser.execute_script("return document.body.innerText.slice(0, 400)")
            raise AssertionError(f"timed out waiting for: {script}\nat {browser.current_url}\npage: {page!r}\nconsole: {browser.get_log('browser')}")
        time.sleep(0.05)

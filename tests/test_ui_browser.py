"""`batchrun ui` in a real browser: headless Chromium on the dashboard's pages, with real launches behind them.

As `tests/test_report_browser.py`: Debian's chromium and chromium-driver
(`.ci/run` installs them), with the network off but for loopback, where the
dashboard listens.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import run_batchrun, start_batchrun, wait_for
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from test_report_browser import start_chromium, wait_until  # skips this module as it skips that one: no browser
from test_ui import HOSTILE, TRAIN, make_sweep, serve

# The report's flags, but loopback reachable (the dashboard listens there) and everything else sent to a closed port.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,2400",
          "--proxy-server=http://127.0.0.1:9")


@pytest.fixture()
def browser(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # Its profile apart from the folders the dashboard serves (a profile holds metadata.json files of its own).
    driver = start_chromium(_FLAGS, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


def _severe(browser) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _rows(browser) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The table's (line, state) pairs as shown."""
    return browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#runs tbody tr'), function (r) { return [r.cells[0].textContent, r.cells[2].textContent]; })")  # type: ignore[no-any-return]


def test_every_page_draws_without_a_script_error_and_user_text_stays_text(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    make_sweep(tmp_path, "exp")
    make_sweep(tmp_path / "other", "b")
    with serve(tmp_path) as ui:
        # Without the token the browser gets the refusal, nothing else.
        browser.get(ui.base + "/")
        assert "403 Forbidden" in browser.find_element(By.TAG_NAME, "body").text
        browser.get_log("browser")  # the refusal itself is logged as a failed load: not a script error
        browser.get(ui.url)
        wait_until(browser, "return window.batchrunReady === true")
        assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#sweeps td:first-child a")] == ["b.runfile", "exp.runfile"]
        assert _severe(browser) == []
        # The sweep page: every run, the hostile command as text, nothing it holds ran.
        browser.find_element(By.LINK_TEXT, "exp.runfile").click()
        wait_until(browser, "return window.batchrunReady === true && document.querySelectorAll('#runs tbody tr').length === 17")
        assert browser.execute_script("return window.pwned === undefined")
        assert any(HOSTILE in cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#runs .cmd"))
        # A log-distributed parameter gets a log axis: in the metric's plot and in parallel coordinates.
        wait_until(browser, "var gd = document.getElementById('scatters'); return !!(gd && gd._fullLayout && gd._fullLayout.xaxis)")
        assert browser.execute_script("return document.getElementById('scatters')._fullLayout.xaxis.type") == "log"
        labels = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#parcoords .pc-label'), function (t) { return t.textContent; })")
        assert labels[0] == "lr (log)"
        ticks = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#parcoords .pc-axis')[0].querySelectorAll('text.tick'), function (t) { return t.textContent; })")
        assert ticks == ["0.0001", "0.001", "0.01", "0.1"]
        # The seed is whole numbers: its ticks are 1 and 2, never 1.5.
        assert browser.execute_script("return document.getElementById('scatters')._fullLayout.xaxis2.ticktext") == ["1", "2"]
        # Further down: importance, history curves (best first), best so far, the means over the seed.
        browser.execute_script("document.getElementById('br-groups').scrollIntoView()")
        wait_until(browser, "return document.querySelectorAll('#importance .barlayer .point').length === 6")
        wait_until(browser, "return document.querySelectorAll('#history .scatterlayer .trace').length === 17")
        wait_until(browser, "return document.querySelectorAll('.br-groups tr').length === 10")
        assert _severe(browser) == []
        # A run's page: parameters, metrics, its curves and both logs.
        browser.execute_script("window.scrollTo(0, 0)")
        browser.find_element(By.CSS_SELECTOR, "#runs tbody tr td a").click()
        wait_until(browser, "return window.batchrunReady === true && document.getElementById('out-log').textContent.length > 0")
        assert browser.find_element(By.ID, "out-log").text == "trained lr=0.0001 seed=1"
        assert browser.find_element(By.ID, "err-log").text == "to stderr"
        assert "lr" in browser.find_element(By.CSS_SELECTOR, ".run-info").text
        wait_until(browser, "var gd = document.getElementById('run-curves'); return !!(gd && gd._fullData && gd._fullData.length === 2)")
        assert _severe(browser) == []
        # The comparison of the two sweeps.
        browser.get(ui.url)
        wait_until(browser, "return !!document.getElementById('compare-go')")
        browser.find_element(By.ID, "compare-go").click()
        wait_until(browser, "return window.batchrunReady === true && document.querySelectorAll('#compare-curves .scatterlayer .trace').length === 10")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Comparison: b.runfile and exp.runfile"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-spread .boxlayer .trace")) == 2
        assert _severe(browser) == []


def test_brushing_an_axis_filters_the_table(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    make_sweep(tmp_path, "exp")
    with serve(tmp_path) as ui:
        browser.get(ui.url)
        wait_until(browser, "return !!document.querySelector('#sweeps a')")
        browser.find_element(By.CSS_SELECTOR, "#sweeps a").click()
        wait_until(browser, "return window.batchrunReady === true && document.querySelectorAll('#parcoords .pc-brush').length === 5")
        # Drag along the lr axis over its middle two decades: 0.001 and 0.01, as a user would with the mouse.
        left, top, width, height = browser.execute_script("var b = document.querySelectorAll('#parcoords .pc-brush')[0].getBoundingClientRect(); return [b.left, b.top, b.width, b.height]")
        x = int(left + width / 2)
        actions = ActionBuilder(browser)
        pointer = actions.pointer_action
        pointer.move_to_location(x, int(top + 0.2 * height))
        pointer.pointer_down()
        for k in range(1, 9):
            pointer.move_to_location(x, int(top + 0.2 * height + 0.075 * height * k))
            pointer.pause(0.02)
        pointer.pointer_up()
        actions.perform()
        wait_until(browser, "return document.querySelectorAll('#runs tbody tr').length === 8")
        lrs = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#runs tbody tr'), function (r) { return r.cells[3].textContent; })")
        assert sorted(set(lrs)) == ["0.001", "0.01"]
        assert browser.find_element(By.ID, "br-shown").text == "showing 8 of 17"
        # The other plots follow the filter; clearing it brings every run back.
        assert browser.execute_script("return document.getElementById('scatters')._fullData[0].x.length") == 8
        browser.find_element(By.XPATH, "//button[text()='clear filters']").click()
        wait_until(browser, "return document.querySelectorAll('#runs tbody tr').length === 17")
        # The text filter: a parameter range and a word.
        box = browser.find_element(By.ID, "br-filter")
        box.send_keys("lr<0.005 sgd")
        wait_until(browser, "return document.querySelectorAll('#runs tbody tr').length === 4")
        assert _severe(browser) == []


LIVE = f"{sys.executable} train.py --lr={{lr}} --seed=1 --steps=4 --sleep=0.2\n"


@pytest.mark.slow
def test_a_running_sweep_gains_rows_live_and_a_job_is_killed_from_the_page(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "train.py").write_text(TRAIN)
    runfile = tmp_path / "live.runfile"
    runfile.write_text(LIVE.format(lr=0.1))
    launch = start_batchrun("launch", "live.runfile", "-j", "2", "--follow", "--grace", "1", cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "runs" / "live" / "jobs.journal").exists(), timeout=30, what="the launch to start")
        with serve(tmp_path) as ui:
            browser.get(ui.url)
            wait_until(browser, "return !!document.querySelector('#sweeps a')")
            assert "launch running: pid" in browser.find_element(By.ID, "sweeps").text
            browser.find_element(By.CSS_SELECTOR, "#sweeps a").click()
            wait_until(browser, "return window.batchrunReady === true && document.querySelectorAll('#runs tbody tr').length === 1")
            browser.execute_script("window.notReloaded = true")
            wait_until(browser, "return document.querySelector('#runs tbody tr').cells[2].textContent === 'succeeded'")
            # Lines appended to the runfile run, and their rows appear, then finish, without a reload.
            with runfile.open("a") as f:
                f.write(LIVE.format(lr=0.01) + LIVE.format(lr=0.001))
            wait_until(browser, "return document.querySelectorAll('#runs tbody tr').length === 3", timeout=60)
            wait_until(browser, "return Array.prototype.every.call(document.querySelectorAll('#runs tbody tr'), function (r) { return r.cells[2].textContent === 'succeeded'; })", timeout=60)
            assert _rows(browser) == [["1", "succeeded"], ["2", "succeeded"], ["3", "succeeded"]]
            assert browser.execute_script("return window.notReloaded === true")
            # A long job: its row shows it running, with a kill button that asks once more, then kills it.
            with runfile.open("a") as f:
                f.write("sleep 300\n")
            wait_until(browser, "return !!document.querySelector('#runs tbody tr.s-running button.kill')", timeout=60)
            button = browser.find_element(By.CSS_SELECTOR, "#runs tbody tr.s-running button.kill")
            button.click()
            assert button.text == "really kill?"
            time.sleep(2)  # the running row is redrawn meanwhile (its runtime grows): its button stays the one asked
            assert button.text == "really kill?"
            ActionChains(browser).move_to_element(button).click().perform()
            wait_until(browser, "var r = document.querySelectorAll('#runs tbody tr')[3]; return !!r && r.cells[2].textContent === 'killed'", timeout=60)
            assert browser.execute_script("return window.notReloaded === true")
            assert _severe(browser) == []
            # Stop the launch from the page: it starts nothing new and ends.
            stop = browser.find_element(By.XPATH, "//div[@id='launch']//button[text()='stop the launch']")
            stop.click()
            stop.click()
            launch.wait(timeout=60)
            wait_until(browser, "return document.getElementById('launch').textContent === 'no launch running'", timeout=30)
    finally:
        if launch.poll() is None:
            launch.kill()
        launch.communicate(timeout=60)
    assert launch.returncode == 1  # a killed job: not every job succeeded
    proc = run_batchrun("status", "live.runfile", "--json", cwd=tmp_path)
    assert sorted(job["state"] for job in json.loads(proc.stdout)["jobs"].values()) == ["killed", "succeeded", "succeeded", "succeeded"]

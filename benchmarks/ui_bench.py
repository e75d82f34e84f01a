"""`batchrun ui` at scale: a finished sweep of 10,000 runs with 50-point histories, in headless Chromium.

Run by hand (never by the tests), with the Python that has batchrun and its
`ui` and `test` extras (tornado, plotly, selenium) and Debian's chromium and
chromium-driver:

    python benchmarks/ui_bench.py                      # 10,000 runs; appends a section to RESULTS.md
    python benchmarks/ui_bench.py --runs 500 --no-write   # quick check of the script itself
    python benchmarks/ui_bench.py --keep /tmp/uibench   # reuse the sweep a previous run launched there

What it does, all through the real CLI and a real browser:

1. launches a runfile of N runs (`-j 4`) whose jobs each append 50 history
   lines of `loss` and `acc` to `$BATCHRUN_METRICS` (one awk each), over
   a log-spaced lr, a seed, a layer count and a width;
2. starts `batchrun ui` over it and times, over HTTP: the first full
   document (a cold reading of the runs directory), a full document again,
   and an update (`?since=` the current version: what a live page asks every
   time), the server's own time from its `Server-Timing` header;
3. in headless Chromium (a fresh profile, software WebGL as on any machine
   without a GPU), the sweep page from navigation until the page says it is
   drawn (`window.batchrunReady`: the data fetched, the table and every plot
   in view drawn), at 1400x900 (parallel coordinates and the table in view)
   and at 1400x6000 (every section in view, so every plot drawn), first
   with an empty cache and then reloaded;
4. appends 20 lines to the runfile and launches them while the page is
   open: the time from each job's end (its record) until the page shows it
   finished, and the server's time per update answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"

# Each job: 50 history lines from one awk, values shaped by lr and seed.
JOB = (": --lr={lr} --seed={seed} --layers={layers} --width={width} ; awk -v lr={lr} -v s={seed} "
       "'BEGIN {{ for (i = 0; i < 50; i++) printf \"{{\\\"loss\\\": %.6g, \\\"acc\\\": %.4f, \\\"_step\\\": %d}}\\n\", "
       "1 / (1 + i * lr * 50) + s / 1000 + {layers} / 100, i / 60, i }}' >> \"$BATCHRUN_METRICS\"")
LRS = ["0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1"]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--proxy-server=http://127.0.0.1:9")


def runfile_lines(runs: int) -> list[str]:
    lines = []
    for i in range(runs):
        lr, seed, layers, width = LRS[i % 10], (i // 10) % 10 + 1, (i // 100) % 10 + 1, 16 * ((i // 1000) % 10 + 1)
        line = JOB.format(lr=lr, seed=seed, layers=layers, width=width)
        lines.append(line if i < 10_000 else line.replace(" ; awk", f" --rep={i // 10_000} ; awk"))
    return lines


def launch(folder: Path, runs: int) -> None:
    (folder / "sweep.runfile").write_text("".join(line + "\n" for line in runfile_lines(runs)))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "batchrun", "launch", "sweep.runfile", "-j", "4", "-q"], cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the launch failed: {proc.stderr}")
    print(f"launched {runs:,} runs in {time.monotonic() - started:.0f} s", file=sys.stderr)


class Server:
    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "ui", str(folder), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        url = self.proc.stdout.readline().strip()
        match = re.fullmatch(r"(http://[^/]+)/\?token=(\S+)", url)
        assert match, url
        self.base, self.token = match.group(1), match.group(2)

    def get(self, path: str) -> tuple[float, float, bytes, dict[str, str]]:
        """Wall seconds, the server's own milliseconds (Server-Timing), the body, the headers."""
        req = urllib.request.Request(self.base + path, headers={"X-Batchrun-Token": self.token})
        started = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = resp.read()
            headers = dict(resp.headers)
        wall = time.perf_counter() - started
        server = float(re.search(r"dur=([0-9.]+)", headers.get("Server-Timing", "dur=nan")).group(1))  # type: ignore[union-attr]
        return wall, server, body, headers

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def browser(height: int, profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*FLAGS, f"--window-size=1400,{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver") or "chromedriver"))


def page_load(driver, url: str, reload: bool = False) -> float:  # type: ignore[no-untyped-def]
    """Seconds from navigation start until the page says it is drawn."""
    if reload:
        driver.refresh()
    else:
        driver.get(url)
    deadline = time.monotonic() + 120
    while not driver.execute_script("return window.batchrunReady === true"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the page did not get ready: {driver.execute_script('return document.body.innerText.slice(0, 300)')}")
        time.sleep(0.02)
    return float(driver.execute_script("return performance.now()")) / 1000


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else f"{values[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, default=None, help="the folder of the sweep; launched there if it has none")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="uibench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "runs" / "sweep" / "jobs.journal").exists():
        launch(folder, args.runs)
    rows: list[tuple[str, str]] = []
    server = Server(folder)
    try:
        _, _, body, _ = server.get("/api/overview")
        sid = json.loads(body)["sweeps"][0]["sid"]
        wall, own, body, _ = server.get(f"/api/sweep/{sid}")
        doc = json.loads(body)
        runs = len(doc["rows"])
        rows.append((f"first full document of the {runs:,}-run sweep (cold reading), s", f"{wall:.2f}"))
        rows.append(("its size, MB (JSON, not compressed)", f"{len(body) / 1e6:.1f}"))
        fulls, updates, update_walls = [], [], []
        for _ in range(max(3, args.repeat)):
            wall, own, _, _ = server.get(f"/api/sweep/{sid}")
            fulls.append(wall)
            wall, own, body, headers = server.get(f"/api/sweep/{sid}?since={doc['version']}")
            updates.append(own)
            update_walls.append(wall * 1000)
        rows.append(("full document again (read kept), s", median(fulls)))
        rows.append(("an update answer (`?since=` the current version), server's own ms", median(updates)))
        rows.append(("the same, wall ms at the client", median(update_walls)))
        url = f"{server.base}/sweep/{sid}?token={server.token}"
        for height, what in ((900, "1400x900: parallel coordinates and the table in view"), (6000, "1400x6000: every section in view")):
            cold, warm = [], []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as profile:
                    driver = browser(height, Path(profile))
                    try:
                        cold.append(page_load(driver, url))
                        warm.append(page_load(driver, url, reload=True))
                    finally:
                        driver.quit()
            rows.append((f"sweep page until drawn, empty cache, {what}, s", median(cold)))
            rows.append(("the same, reloaded (plotly.js cached), s", median(warm)))
        rows += live_updates(folder, server, sid)
    finally:
        server.stop()
    table = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    print("\n".join(table))
    if not args.no_write:
        write(table, args)


def live_updates(folder: Path, server: Server, sid: str) -> list[tuple[str, str]]:
    """20 more runs launched while a page watches: from each run's end to the page showing it, and the server's time per update."""
    driver = browser(900, Path(tempfile.mkdtemp(prefix="uibench-profile-")))
    try:
        page_load(driver, f"{server.base}/sweep/{sid}?token={server.token}")
        driver.execute_script("""
            window.seen = {};
            var view = window.batchrunSweep, apply = view.applyDiff.bind(view);
            view.applyDiff = function (d) {
              var at = view.doc.columns.indexOf('state'), id = view.doc.columns.indexOf('job_id');
              d.rows.forEach(function (r) { if (r[at] === 'succeeded' && !(r[id] in window.seen)) window.seen[r[id]] = Date.now() / 1000; });
              return apply(d);
            };""")
        # New seeds of the same parameters: rows come, the axes stay (a new parameter would send the whole document).
        extra = [re.sub(r"--seed=\d+ ", f"--seed={11 + i} ", line).replace(" ; awk", " ; sleep 0.3 ; awk") for i, line in enumerate(runfile_lines(20))]
        with (folder / "sweep.runfile").open("a") as f:
            f.write("".join(line + "\n" for line in extra))
        subprocess.run([sys.executable, "-m", "batchrun", "launch", "sweep.runfile", "-j", "2", "-q"], cwd=folder, capture_output=True, check=True)
        time.sleep(3)
        seen = driver.execute_script("return window.seen")
    finally:
        driver.quit()
    metadata = json.loads((folder / "runs" / "sweep" / "metadata.json").read_text())
    delays = [seen[job] - entry["start"] - entry["runtime"] for job, entry in metadata.items() if job in seen and entry.get("runtime") is not None]
    _, _, body, headers = server.get(f"/api/sweep/{sid}")
    return [
        (f"a run's end until the open page shows it, {len(delays)} runs ended during a launch, s", median(delays) if delays else "none seen"),
        ("the server's reading of the runs directory then (X-Refresh-Ms), ms", headers.get("X-Refresh-Ms", "?")),
    ]


def write(table: list[str], args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    chromium = subprocess.run([shutil.which("chromium") or "chromium", "--version"], capture_output=True, text=True).stdout.strip()
    section = [
        f"## {now}, batchrun ui (benchmarks/ui_bench.py, {args.runs:,} runs){' - ' + args.note if args.note else ''}",
        "",
        f"{platform.platform()}, {os.cpu_count()} cores, {chromium}, software WebGL; load average at the end {load[0]:.1f}. "
        f"Medians of {args.repeat} (min-max).",
        "",
        *table,
        "",
    ]
    with RESULTS.open("a") as f:
        f.write("\n" + "\n".join(section))


if __name__ == "__main__":
    main()

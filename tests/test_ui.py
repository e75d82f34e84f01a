"""`batchrun ui` through HTTP: the token, what is refused, what each answer holds, and the command's errors.

The server runs as a user starts it (`python -m batchrun ui DIR --port 0`)
over runs directories made by real launches; `tests/test_ui_browser.py`
drives the pages in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import batchrun_cmd, run_batchrun, wait_for

HOSTILE = "</script><script>window.pwned=1</script>"

TRAIN = """\
import sys, time
import batchrun
args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
lr, seed = float(args["lr"]), int(args["seed"])
for step in range(int(args.get("steps", 12))):
    batchrun.log({"loss": 1.0 / (1 + step * lr * 100) + seed / 1000, "acc": step / 20}, step=step)
    time.sleep(float(args.get("sleep", 0)))
print("trained lr=%s seed=%s" % (lr, seed))
print("to stderr", file=sys.stderr)
"""


def sweep_lines(python: str = sys.executable) -> list[str]:
    """A runfile sweep: a log-spaced lr, two seeds, two optimizers, and one hostile command."""
    lines = [f"{python} train.py --lr={lr} --seed={seed} --opt={opt}" for lr in ("0.0001", "0.001", "0.01", "0.1") for seed in (1, 2) for opt in ("adam", "sgd")]
    lines.append(f"{python} train.py --lr=0.05 --seed=1 '--opt={HOSTILE}'")
    return lines


def make_sweep(folder: Path, name: str = "exp") -> Path:
    """A finished sweep launched in `folder`; returns the runs directory."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(TRAIN)
    (folder / f"{name}.runfile").write_text("".join(line + "\n" for line in sweep_lines()))
    proc = run_batchrun("launch", f"{name}.runfile", "-j", "2", "-q", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "runs" / name


@dataclass
class Ui:
    """A running `batchrun ui`: its process, base URL and token."""

    proc: subprocess.Popen[str]
    base: str
    token: str

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def request(self, path: str, token: str | None = "query", method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = dict(headers or {})
        if token == "query":
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        elif token == "header":
            headers["X-Batchrun-Token"] = self.token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def json(self, path: str, **kwargs: Any) -> Any:
        status, body, _ = self.request(path, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)


@contextmanager
def serve(folder: Path, *args: str, command: list[str] | None = None) -> Iterator[Ui]:
    """`batchrun ui` on any free port; stopped with SIGTERM, which must end it cleanly (exit 0)."""
    proc = subprocess.Popen([*(command or batchrun_cmd()), "ui", str(folder), "--port", "0", *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        assert first.startswith("batchrun: serving the runs directories under "), first + (proc.stderr.read() if proc.stderr else "")
        url = proc.stdout.readline().strip()
        match = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/\?token=([A-Za-z0-9_-]{32})", url)
        assert match, url
        assert proc.stdout.readline() == "batchrun: Ctrl-C to stop\n"
        yield Ui(proc, match.group(1), match.group(2))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.endswith("batchrun: ui stopped\n") and err == ""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two finished sweeps: exp (runs/exp) and other/b (other/runs/b)."""
    folder = tmp_path_factory.mktemp("ui")
    make_sweep(folder, "exp")
    make_sweep(folder / "other", "b")
    return folder


def test_every_request_without_the_token_is_refused(finished: Path) -> None:
    with serve(finished) as ui:
        sid = ui.json("/api/overview")["sweeps"][0]["sid"]
        paths = ["/", f"/sweep/{sid}", "/compare", "/static/plotly.min.js", "/static/ui.js", "/api/overview", f"/api/sweep/{sid}", "/no/such/page", "/static/../../etc/passwd"]
        for path in paths:
            status, body, _ = ui.request(path, token=None)
            assert status == 403, path
            assert b"token" in body
            assert ui.request(path + "?token=" + "x" * 32, token=None)[0] == 403
        # The token opens them (an unknown path is then a plain 404).
        assert ui.request("/")[0] == 200 and ui.request(f"/sweep/{sid}")[0] == 200 and ui.request("/no/such/page")[0] == 404
        # An action carries the token in its header, never in the URL (a link or a form elsewhere cannot send it).
        assert ui.request(f"/api/sweep/{sid}/stop", method="POST", body={}, token="query")[0] == 403
        assert ui.request(f"/api/sweep/{sid}/stop", method="POST", body={}, token=None)[0] == 403
        status, body, _ = ui.request(f"/api/sweep/{sid}/stop", method="POST", body={}, token="header")
        assert status == 409 and b"no launch" in body
        # Another site's page, even with the token, is refused: by its Origin, and by its Host (DNS rebinding).
        assert ui.request(f"/api/sweep/{sid}/stop", method="POST", body={}, token="header", headers={"Origin": "http://evil.example"})[0] == 403
        assert ui.request("/api/overview", headers={"Host": "evil.example"})[0] == 403


def test_pages_carry_no_inline_script_and_a_strict_policy(finished: Path) -> None:
    with serve(finished) as ui:
        status, body, headers = ui.request("/")
        page = body.decode()
        assert status == 200 and "<script>" not in page and "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
        # Static files come from a fixed list; plotly.js from the plotly package, gzipped once.
        status, body, headers = ui.request("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip" and len(body) > 500_000
        assert ui.request("/static/README.md")[0] == 404


def test_overview_lists_every_runs_directory(finished: Path) -> None:
    with serve(finished) as ui:
        doc = ui.json("/api/overview")
        assert doc["root"] == str(finished)
        assert [(s["title"], s["path"], s["total"], s["counts"]) for s in doc["sweeps"]] == [
            ("b.runfile", "other/runs/b", 17, {"succeeded": 17}),
            ("exp.runfile", "runs/exp", 17, {"succeeded": 17}),
        ]
        assert all(s["launch"] == {"running": False, "pid": None, "since": None} and s["last_activity"] > 0 for s in doc["sweeps"])


def test_a_sweep_document_its_axes_and_what_changed(finished: Path) -> None:
    with serve(finished) as ui:
        sid = next(s["sid"] for s in ui.json("/api/overview")["sweeps"] if s["title"] == "exp.runfile")
        doc = ui.json(f"/api/sweep/{sid}")
        assert doc["full"] and doc["title"] == "exp.runfile" and doc["metric"] == "loss" and doc["goal"] == "min"
        assert {p["name"]: p["kind"] for p in doc["params"]} == {"lr": "log", "seed": "int", "opt": "category"}
        assert doc["params"][2]["categories"] == [HOSTILE, "adam", "sgd"]
        assert len(doc["rows"]) == 17 and doc["columns"][:3] == ["line", "job_id", "state"]
        # Asked again since this version: nothing changed, so no row travels.
        again = ui.json(f"/api/sweep/{sid}?since={doc['version']}")
        assert again["version"] == doc["version"] and not again["full"] and again["rows"] == [] and again["removed"] == []
        # Histories, importance, groups over the seed.
        ids = [row[1] for row in doc["rows"][:3]]
        curves = ui.json(f"/api/sweep/{sid}/histories?metric=loss&jobs={','.join(ids)}")
        assert sorted(curves["curves"]) == sorted(ids) and curves["curves"][ids[0]]["x"] == list(range(12))
        importance = ui.json(f"/api/sweep/{sid}/importance?metric=loss")
        assert importance["runs"] == 17 and importance["params"][0]["name"] == "lr" and importance["params"][0]["correlation"] < 0
        groups = ui.json(f"/api/sweep/{sid}/groups?over=seed&metric=loss")
        assert groups["params"] == ["lr", "opt"] and len(groups["groups"]) == 9 and groups["groups"][0]["params"]["lr"] == 0.1


def test_a_run_and_its_logs_and_nothing_else(finished: Path) -> None:
    with serve(finished) as ui:
        sid = next(s["sid"] for s in ui.json("/api/overview")["sweeps"] if s["title"] == "exp.runfile")
        doc = ui.json(f"/api/sweep/{sid}")
        job = doc["rows"][0][1]
        run = ui.json(f"/api/sweep/{sid}/run/{job}")
        assert run["line"] == 1 and run["state"] == "succeeded" and run["parameters"] == {"lr": 0.0001, "seed": 1, "opt": "adam"}
        assert [m["name"] for m in run["metrics"]] == ["loss", "acc"] and run["metrics"][0]["count"] == 12
        # What the run used, from its supervisor's wait4 (issue 24): shown whatever the machine measured.
        assert run["record"]["status"] == 0 and run["record"]["attempts"] == 1
        assert set(run["resources"]) == {"peak memory (kB)", "user CPU (s)", "system CPU (s)"} and run["resources"]["peak memory (kB)"] > 0
        out = ui.json(f"/api/sweep/{sid}/log/{job}?name=out&offset=-1")
        assert out["text"] == "trained lr=0.0001 seed=1\n" and out["offset"] == out["size"]
        assert ui.json(f"/api/sweep/{sid}/log/{job}?name=err&offset=0")["text"] == "to stderr\n"
        # More of the log from where the page stopped: nothing new.
        assert ui.json(f"/api/sweep/{sid}/log/{job}?name=out&offset={out['offset']}")["text"] == ""
        # Only the two logs of the sweep's own jobs: no other name, no other job, no other directory.
        for path in (f"/api/sweep/{sid}/log/{job}?name=../../../../etc/passwd", f"/api/sweep/{sid}/log/{job}?name=metrics", f"/api/sweep/{sid}/log/{'0' * 16}?name=out",
                     f"/api/sweep/{sid}/run/{'0' * 16}", f"/api/sweep/{'0' * 12}/run/{job}", "/api/sweep/../../etc/passwd"):
            assert ui.request(path)[0] == 404, path


def test_resources_show_when_the_record_has_them(tmp_path: Path) -> None:
    runs = make_sweep(tmp_path)
    metadata = json.loads((runs / "metadata.json").read_text())
    job = next(iter(metadata))
    metadata[job].update({"max_rss_kb": 51200, "user_cpu_s": 1.5, "sys_cpu_s": 0.25})
    (runs / "metadata.json").write_text(json.dumps(metadata))
    (runs / ".metadata.stamp").unlink(missing_ok=True)  # the file no longer is what the launch wrote
    with serve(tmp_path) as ui:
        sid = ui.json("/api/overview")["sweeps"][0]["sid"]
        run = ui.json(f"/api/sweep/{sid}/run/{job}")
        assert run["resources"] == {"peak memory (kB)": 51200, "user CPU (s)": 1.5, "system CPU (s)": 0.25}


def test_a_new_runs_directory_shows_up(tmp_path: Path) -> None:
    with serve(tmp_path) as ui:
        assert ui.json("/api/overview")["sweeps"] == []
        make_sweep(tmp_path, "late")
        wait_for(lambda: [s["title"] for s in ui.json("/api/overview")["sweeps"]] == ["late.runfile"], timeout=20, what="the new runs directory")


def test_command_errors_are_one_line(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    proc = run_batchrun("ui", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"batchrun: error: {tmp_path / 'nowhere'}: not a directory\n"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        proc = run_batchrun("ui", str(tmp_path), "--port", str(port), cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr == f"batchrun: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    finally:
        busy.close()
    fake = tmp_path_factory.mktemp("notornado")
    (fake / "tornado").mkdir()
    (fake / "tornado" / "__init__.py").write_text("raise ImportError('No module named tornado')\n")
    proc = run_batchrun("ui", str(tmp_path), cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(fake)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "batchrun: error: batchrun ui needs tornado and plotly: pip install 'batchrun[ui]'\n"


# The CLI with the sample's bounds lowered: a runfile of more than 4 lines is shown by a sample.
_SAMPLED = [sys.executable, "-c", "import sys; from batchrun.results import reportdata; reportdata.ROWS, reportdata.BEST_KEPT = 4, 1; from batchrun.cli.app import main; sys.exit(main(sys.argv[1:]))"]


def test_a_long_runfile_is_shown_by_a_sample_with_its_counts_exact(finished: Path) -> None:
    with serve(finished, command=_SAMPLED) as ui:
        sweep = next(s for s in ui.json("/api/overview")["sweeps"] if s["title"] == "exp.runfile")
        assert sweep["total"] == 17 and sweep["counts"] == {"succeeded": 17} and sweep["last_activity"] is not None
        doc = ui.json(f"/api/sweep/{sweep['sid']}")
        lines = [row[0] for row in doc["rows"]]
        # Every 5th run (17 / 4 rounded up), and the best of each metric (loss, acc): the counts stay of all 17.
        assert {1, 6, 11, 16} <= set(lines) and len(lines) <= 6 and doc["counts"] == {"succeeded": 17}
        assert doc["sampled"] == {"total": 17, "shown": len(lines), "every": 5}
        again = ui.json(f"/api/sweep/{sweep['sid']}?since={doc['version']}")
        assert not again["full"] and again["rows"] == [] and again["sampled"] == doc["sampled"]
        # A run of the sample answers as any run does; a run outside it is not reachable.
        run = ui.json(f"/api/sweep/{sweep['sid']}/run/{doc['rows'][0][1]}")
        assert run["line"] == 1 and run["state"] == "succeeded" and run["parameters"] == {"lr": 0.0001, "seed": 1, "opt": "adam"}
        assert run["record"]["status"] == 0 and run["resources"]["peak memory (kB)"] > 0 and run["metrics"][0]["count"] == 12
        other = next(s for s in ui.json("/api/overview")["sweeps"] if s["title"] != "exp.runfile")
        assert "sampled" in ui.json(f"/api/sweep/{other['sid']}")
    with serve(finished) as whole:  # the same run, read whole: the same answer
        assert whole.json(f"/api/sweep/{sweep['sid']}/run/{doc['rows'][0][1]}") == run


def test_a_sampled_sweep_is_read_again_only_when_it_changed(finished: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchrun.results import reportdata
    from batchrun.ui import watch as watch_module

    monkeypatch.setattr(reportdata, "ROWS", 4)
    reads = []
    monkeypatch.setattr(watch_module, "read_report_data", lambda target, **options: reads.append(target) or reportdata.read_report_data(target, **options))
    watch = watch_module.SweepWatch(finished / "runs" / "exp")
    assert watch.refresh() and watch.sampled and watch.results is None and len(reads) == 1
    assert not watch.refresh() and len(reads) == 1  # nothing runs, nothing changed: not read again (a million lines take tens of seconds)
    doc = watch.document()
    assert doc is not None and doc["sampled"]["total"] == 17 and doc["counts"] == {"succeeded": 17}

"""Property-based fuzzing of batchrun's two input readers, and hostile inputs through the CLI.

Each reader either accepts an input or rejects it with its own one-line
error (`RunfileError`, `GridspecError`); any other exception is a bug. The
hypothesis settings are derandomized and bounded so the suite is the same on
every run and finishes in well under a minute; set BATCHRUN_FUZZ=explore for
a longer, random search (with the same properties).
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batchrun.errors import GridspecError, RunfileError
from batchrun.runfile.file import Job, Runfile, load_runfile, parse_runfile_text
from batchrun.store.metadata import build_entry, render_entry, render_pending
from batchrun.store.metascan import _RAN
from batchrun.store.records import JobRecord

RunCli = Callable[..., tuple[int, str, str]]

_EXPLORE = os.environ.get("BATCHRUN_FUZZ") == "explore"


def _fuzz_settings(examples: int) -> settings:
    """Bounded, reproducible settings; `examples` inputs per property."""
    return settings(
        max_examples=examples * 20 if _EXPLORE else examples,
        derandomize=not _EXPLORE,
        database=None,
        # Generous: the machine is shared; a real hang still fails.
        deadline=timedelta(seconds=10),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


def _is_one_line(message: str) -> bool:
    return bool(message) and len(message.splitlines()) == 1 and "\0" not in message


# -- runfiles ------------------------------------------------------------------

# Everything str.splitlines() breaks on, plus the two separators users type.
_BREAKS = ["\n", "\r\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
# Text a UTF-8 file can hold: every code point but the lone surrogates.
_CHARS = st.characters(blacklist_categories=("Cs",))
_ODD = st.sampled_from(["\0", "\t", " ", "\u00a0", "\u3000", "\ufeff", "\u200b", "#", "é", "e\u0301", "🎉", "\U0010ffff", "$(x)", "`x`", "'", '"', "\\"])

_line = st.one_of(
    st.text(_CHARS, max_size=40),
    st.lists(st.one_of(_ODD, st.text(_CHARS, max_size=5)), max_size=8).map("".join),
    st.builds(lambda pad, text: pad + "#" + text, st.sampled_from(["", " ", "\t"]), st.text(_CHARS, max_size=10)),
    # Huge lines: up to 300,000 characters.
    st.builds(lambda char, n: "echo " + char * n, st.sampled_from(["x", "é", "🎉", " "]), st.integers(0, 300_000)),
)
_runfile_text = st.lists(st.tuples(_line, st.sampled_from(_BREAKS)), max_size=30).map(lambda pairs: "".join(a + b for a, b in pairs))


@st.composite
def _runfile_bytes(draw: st.DrawFn) -> bytes:
    """Mostly text-like runfiles, some damaged, some pure noise."""
    kind = draw(st.sampled_from(["text", "damaged", "noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=3000))
    data = draw(_runfile_text).encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a UTF-8 byte order mark
    if kind == "damaged":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            bad = draw(st.sampled_from([b"\0", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", draw(st.binary(min_size=1, max_size=4))]))
            data = data[:at] + bad + data[at:]
    return data


def _check_runfile(runfile: Runfile, text: str) -> None:
    """Job ids are SHA-256 prefixes of the stripped lines; no blank, `#` or repeated jobs; none lost."""
    # Lines end at \n, \r\n or \r (as the original batchrun read them); a BOM is not text.
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    seen: set[str] = set()
    last = 0
    for job in runfile.jobs:
        assert job.command and job.command == job.command.strip() and not job.command.startswith("#")
        assert job.job_id == hashlib.sha256(job.command.encode("utf-8")).hexdigest()[:16]
        assert job.command not in seen
        seen.add(job.command)
        assert job.lineno > last, "jobs out of file order"
        last = job.lineno
        assert lines[job.lineno - 1].strip() == job.command
    wanted = {line.strip() for line in lines if line.strip() and not line.strip().startswith("#")}
    assert seen == wanted
    for command, first, again in runfile.duplicates:
        assert first < again and lines[again - 1].strip() == command


@_fuzz_settings(300)
@given(text=_runfile_text)
@example(text="echo a\r\necho a\n  echo a  \n#echo b\n \t# c\n\n")
@example(text="echo a\x85echo b\u2028echo c\fecho d")
@example(text="\ufeffecho bom\n")
def test_parse_runfile_text_properties(text: str) -> None:
    _check_runfile(parse_runfile_text(text, Path("fuzz.runfile")), text)


@_fuzz_settings(300)
@given(command=_line, lineno=st.integers(1, 10**7), logs=st.text(_CHARS, max_size=12))
@example(command="python t.py --lr=0.1 --name='é ü' --flag", lineno=3, logs="runs/x/logs")
def test_a_pending_entry_renders_as_build_entry_does(command: str, lineno: int, logs: str) -> None:
    # metadata.json's fresh build renders a pending job from a template (`render_pending`): the same bytes.
    job_id = hashlib.sha256(command.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    job = Job(command, job_id, lineno)
    log_dir = f"{logs}/{job_id}"
    assert render_pending(job, log_dir) == render_entry(job_id, build_entry(job, None, log_dir))


_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 2e9), st.integers(-(2**70), 2**70).map(float))
_count = st.one_of(st.none(), st.integers(-(2**70), 2**70))
_text = st.one_of(st.none(), st.text(_CHARS, max_size=12), st.from_regex(r"[ -~]{0,12}", fullmatch=True))


@_fuzz_settings(400)
@given(
    command=_line, state=st.sampled_from(["succeeded", "failed", "running", "interrupted", "timeout", "pending", "sta\"te"]),
    status=_count, start=_number, end=_number, attempts=st.integers(0, 10**6), exit_codes=st.lists(st.one_of(st.none(), st.integers(-300, 300)), max_size=4),
    host=_text, ref=_text, holds=_text, code=_text, slot=_count, rss=_count, user=_number, system=_number, gpu=_count, logs=st.text(_CHARS, max_size=12),
)
def test_a_line_metascan_passes_over_undecoded_is_json_with_a_state_of_its_own(**values: Any) -> None:
    # `EntryScan(ran=True)` gives a line `_RAN` matches as undecoded, taken for batchrun's entry of a job that ran:
    # such a line must decode, to the entry rendered, with a `state` at its top level; and a plain one must match.
    command, logs = values.pop("command"), values.pop("logs")
    job_id = hashlib.sha256(command.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    rec = JobRecord(job_id)
    for name, field in [("state", "state"), ("status", "status"), ("start", "start"), ("end", "end"), ("attempts", "attempts"), ("exit_codes", "exit_codes"),
                        ("host", "host"), ("ref", "ref"), ("holds", "holds"), ("code", "code"), ("slot", "slot"), ("rss", "max_rss_kb"),
                        ("user", "user_cpu_s"), ("system", "sys_cpu_s"), ("gpu", "max_gpu_mem_mb")]:
        setattr(rec, field, values[name])
    entry = build_entry(Job(command, job_id, 7), rec, f"{logs}/{job_id}")
    line = render_entry(job_id, entry)
    found = _RAN.match(b"\n" + line + b",\n")
    if found is not None:
        assert found.end() == len(line) + 2  # the whole line, its comma
        assert found.group(1).decode() == job_id
        decoded = json.loads(b"{" + line + b"}")[job_id]
        assert "state" in decoded and decoded == json.loads(json.dumps(entry))
    plain = all(isinstance(v, str) and v.isascii() and v.isprintable() and '"' not in v and "\\" not in v for v in (command, logs, rec.state, rec.host or "", rec.ref or "", rec.holds or "", rec.code or ""))
    finite = all(v is None or math.isfinite(v) for v in (rec.start, rec.end, rec.user_cpu_s, rec.sys_cpu_s))
    if plain and finite and None not in rec.exit_codes and not entry["parameters"]:
        assert found is not None, line


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@_fuzz_settings(400)
@given(data=_runfile_bytes())
@example(data=b"\x7fELF\x00\x01\x02")
@example(data=b"echo a\necho b\n\x00\n")
@example(data=b"echo caf\xe9\n")
@example(data="echo ü\n".encode("utf-16"))
@example(data=b"echo " + b"x" * 1_000_000 + b"\n")
@example(data=b"\r\n" * 50_000)
def test_load_runfile_parses_or_raises_one_line_runfile_error(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "fuzz.runfile"
    path.write_bytes(data)
    try:
        runfile = load_runfile(path)
    except RunfileError as err:
        message = str(err)
        assert _is_one_line(message), message
        assert message.startswith(f"{path}:"), message
        assert b"\0" in data or not _decodes(data), f"a valid UTF-8 text file was refused: {message}"
        if b"\0" in data:
            lineno = data.count(b"\n", 0, data.index(b"\0")) + 1
            assert f"{path}:{lineno}: binary file" in message
        return
    assert b"\0" not in data, "a file with a NUL byte was accepted"
    _check_runfile(runfile, data.decode("utf-8"))


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- gridspecs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep() -> object:
    # Imported, not importorskip'ed: a broken import must fail, never skip.
    return importlib.import_module("batchrun.sweeps.gridspec")


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(_CHARS, max_size=12),
    st.sampled_from(["${a}", "${}", "$", "{", "'", '"', "--x=1", "a b", "\n", "~", "null", "1e999", "0x1F", "1:30"]),
)
_names = st.one_of(st.sampled_from(["a", "b", "lr", "x.y", "p-q", "${a}", "bad name", "", "program"]), st.text(_CHARS, max_size=6))
_anything = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)), max_leaves=20)

_original_param = st.one_of(
    st.fixed_dictionaries({"values": st.lists(_scalar, max_size=5)}),
    st.fixed_dictionaries({"value": _scalar}),
    st.fixed_dictionaries({"min": _scalar, "max": _scalar}, optional={"step": _scalar}),
    st.fixed_dictionaries({"min": st.integers(-(10**6), 10**6), "max": st.integers(-(10**6), 10**6), "step": st.integers(-(10**3), 10**3)}),
    st.fixed_dictionaries({"min": st.floats(-1e6, 1e6), "max": st.floats(-1e6, 1e6), "step": st.floats(-1e3, 1e3)}),
    _anything,
)
_original_spec = st.fixed_dictionaries(
    {"parameters": st.dictionaries(_names, _original_param, max_size=4)},
    optional={"program": st.one_of(st.sampled_from(["python3 train.py", "run ${a} --b=${b}", "echo ${a}${a}", "x ${nope}", "p \\\n q"]), _scalar)},
)
_wandb_param = st.one_of(
    _original_param,
    st.fixed_dictionaries(
        {"distribution": st.one_of(st.sampled_from(["uniform", "int_uniform", "categorical", "constant", "log_uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta", "inv_log_uniform_values"]), _scalar)},
        optional={key: _scalar for key in ("min", "max", "q", "mu", "sigma", "a", "b", "value")} | {"values": st.lists(_scalar, max_size=4), "probabilities": st.lists(_scalar, max_size=4)},
    ),
    st.fixed_dictionaries({"parameters": st.dictionaries(_names, st.fixed_dictionaries({"values": st.lists(_scalar, min_size=1, max_size=3)}), max_size=3)}),
)
_wandb_spec = st.fixed_dictionaries(
    {"parameters": st.dictionaries(_names, _wandb_param, max_size=4)},
    optional={
        "method": st.one_of(st.sampled_from(["grid", "random", "bayes"]), _scalar),
        "command": st.one_of(st.lists(st.sampled_from(["${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}", "${args_json}", "${args_json_file}", "python", "-u", "${a}"]), max_size=6), _scalar),
        "program": st.one_of(st.sampled_from(["train.py", "a b.py"]), _scalar),
        "run_cap": st.one_of(st.integers(-5, 10**6), _scalar),
        "seed": _scalar,
        "name": _scalar,
        "metric": _anything,
    },
)


def _check_gridspec(sweep: object, path: Path) -> None:
    """Either a usable gridspec or a one-line GridspecError; nothing else."""
    try:
        gridspec = sweep.load_gridspec(path)  # type: ignore[attr-defined]
        count = gridspec.count()
        commands = list(itertools.islice(gridspec.iter_commands(), 5))
    except GridspecError as err:
        assert _is_one_line(str(err)), str(err)
        assert str(err).startswith(str(path)), str(err)
        return
    assert isinstance(count, int) and count >= 0
    assert len(commands) == min(count, 5)
    for command in commands:
        assert isinstance(command, str) and _is_one_line(command) and command == command.strip(), repr(command)


@_fuzz_settings(300)
@given(spec=st.one_of(_original_spec, _wandb_spec, _anything))
def test_gridspec_documents_load_or_raise_one_line_error(sweep: object, fuzz_dir: Path, spec: object) -> None:
    path = fuzz_dir / "fuzz.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    _check_gridspec(sweep, path)


_YAML_PIECES = [
    "program: ", "parameters:", "values: ", "value: ", "min: ", "max: ", "step: ", "method: ", "command: ", "run_cap: ",
    "distribution: ", "\n", "\n  ", "\n    ", "- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b", "<<: ", "? ",
    "!!python/object/apply:os.system ", "!!python/name:os.system ", "!!binary ", "!!set ", "!!omap ", "!!str ", "!!int ",
    "!!float ", "!custom ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "|\n  ", ">-\n  ", "'", '"', "\\",
    "#", "~", "null", "true", "yes", "1e999", "-.inf", ".nan", "0x" + "f" * 40, "0o17", "1_000", "190:20:30", "2001-12-14",
    "${a}", "${", "a", "b", "x y", "\t", "\ufeff", "\x85", "\u2028", "é", "🎉", "\x07",
]


@_fuzz_settings(400)
@given(pieces=st.lists(st.one_of(st.sampled_from(_YAML_PIECES), st.text(_CHARS, max_size=4)), max_size=40))
@example(pieces=["program: p\nparameters:\n  a:\n    values: [1, 2]\n"])
@example(pieces=["program: p\nparameters: {a: {values: [1]}}\n", "program: q\n"])
@example(pieces=["!!int "])
def test_gridspec_texts_load_or_raise_one_line_error(sweep: object, fuzz_dir: Path, pieces: list[str]) -> None:
    path = fuzz_dir / "fuzz.yml"
    path.write_text("".join(pieces))
    _check_gridspec(sweep, path)


_SEEDS = sorted((Path(__file__).parent / "data" / "gridspecs").glob("*.yml"))


@_fuzz_settings(300)
@given(
    seed=st.sampled_from(_SEEDS) if _SEEDS else st.nothing(),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 8), st.binary(max_size=6)), min_size=1, max_size=5),
)
def test_gridspec_mutations_load_or_raise_one_line_error(sweep: object, fuzz_dir: Path, seed: Path, edits: list[tuple[float, int, bytes]]) -> None:
    """Byte-level edits (cut, replace, insert) of the real gridspecs in tests/data."""
    data = seed.read_bytes()
    for where, cut, insert in edits:
        at = int(where * len(data))
        data = data[:at] + insert + data[at + cut :]
    path = fuzz_dir / "fuzz.yml"
    path.write_bytes(data)
    _check_gridspec(sweep, path)


@_fuzz_settings(8)
@given(depth=st.integers(1, 3000), flow=st.booleans())
def test_gridspec_deep_nesting(sweep: object, fuzz_dir: Path, depth: int, flow: bool) -> None:
    if flow:
        text = "program: p\nparameters: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "program: p\nparameters:\n" + "".join(" " * (2 * i) + f"k{i}:\n" for i in range(1, min(depth, 3000)))
    path = fuzz_dir / "fuzz.yml"
    path.write_text(text)
    _check_gridspec(sweep, path)


@_fuzz_settings(60)
@given(levels=st.integers(1, 12), fanout=st.integers(1, 12))
def test_gridspec_alias_bombs(sweep: object, fuzz_dir: Path, levels: int, fanout: int) -> None:
    """'Billion laughs': each level an anchored list of `fanout` aliases of the last."""
    lines = ["x0: &x0 [lol]"]
    for level in range(1, levels + 1):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * fanout) + "]")
    lines.append(f"program: p\nparameters:\n  a:\n    values: *x{levels}")
    path = fuzz_dir / "fuzz.yml"
    path.write_text("\n".join(lines) + "\n")
    _check_gridspec(sweep, path)


_HOSTILE_GRIDSPECS = [
    pytest.param("a: &a [*a]\n", id="recursive-alias"),
    pytest.param("x: &x [" + ", ".join(["lol"] * 10) + "]\n" + "".join(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}" if i > 1 else "*x"] * 10) + "]\n" for i in range(1, 10)) + "program: p\nparameters: {a: {values: *x9}}\n", id="billion-laughs"),
    pytest.param("program: !!python/object/apply:os.system ['touch pwned']\nparameters: {a: {values: [1]}}\n", id="python-object-apply"),
    pytest.param("program: !!python/name:os.system\nparameters: {a: {values: [1]}}\n", id="python-name"),
    pytest.param("program: p\nparameters: !!python/object:collections.OrderedDict {}\n", id="python-object"),
    pytest.param("program: p\nparameters: {a: {values: [1]}}\nprogram: q\n", id="duplicate-top-key"),
    pytest.param("program: p\nparameters:\n  a: {values: [1]}\n  a: {values: [2]}\n", id="duplicate-parameter"),
    pytest.param("program: p\nparameters: {a: {values: [1], values: [2]}}\n", id="duplicate-flow-key"),
    pytest.param("program: p\nparameters: " + "[" * 50_000 + "]" * 50_000 + "\n", id="deep-flow-nesting"),
    pytest.param("---\nprogram: p\nparameters: {a: {values: [1]}}\n---\nprogram: q\n", id="two-documents"),
    pytest.param("program: p\x00\nparameters: {a: {values: [1]}}\n", id="nul-character"),
    pytest.param("program: p\nparameters: {a: {values: [1e999, -1e999, .nan]}}\n", id="infinite-values"),
    pytest.param(
        "program: p\nparameters: {a: {values: [0x" + "f" * 5000 + "]}}\n",
        id="huge-hex-integer",
    ),
    # A standard tag on a scalar it cannot convert: PyYAML's constructors (and
    # sweep's own mapping constructor) raise plain Python errors, not YAMLError.
    *[
        pytest.param(
            f"program: p\nparameters: {{a: {{values: [{tagged}]}}}}\n",
            id=f"bad-tagged-scalar-{name}",
        )
        for name, tagged, error in [
            ("empty-int", "!!int ", "IndexError"),
            ("empty-float", "!!float ", "IndexError"),
            ("float", "!!float x", "ValueError"),
            ("binary-int", "!!int 0b2", "ValueError"),
            ("timestamp", "!!timestamp abc", "AttributeError"),
            ("bool", "!!bool maybe", "KeyError"),
            ("map", "!!map x", "ValueError"),
        ]
    ],
    pytest.param(
        "program: p\nparameters: {a: {values: [" + "1" * 5000 + "]}}\n",
        id="huge-decimal-integer",
    ),
    pytest.param(
        "program: p\nparameters: {a: {min: 0, max: 1, step: 1e-300}}\n",
        id="range-too-long",
    ),
    pytest.param(
        "program: p\nparameters: {a: {min: 0, max: 100000000000000000000000000, step: 1}}\n",
        id="integer-range-too-long",
    ),
    pytest.param(
        "method: random\nrun_cap: 5\nprogram: p\nparameters: {a: {distribution: q_uniform, min: 0, max: 1e308, q: 1e-308}}\n",
        id="wandb-q-overflow",
    ),
    pytest.param(
        "method: random\nrun_cap: 999999999999999999999999999999\nprogram: p\nparameters: {a: {distribution: uniform, min: 0, max: 1}}\n",
        id="wandb-huge-run-cap",
    ),
]


@pytest.mark.parametrize("text", _HOSTILE_GRIDSPECS)
def test_hostile_gridspecs(sweep: object, fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "hostile.yml"
    path.write_text(text)
    _check_gridspec(sweep, path)
    assert not (Path.cwd() / "pwned").exists()


# -- hostile inputs through the CLI: exit 2, one line on stderr -------------------


def _make_symlink_loop(d: Path) -> None:
    (d / "loop.runfile").symlink_to(d / "loop2.runfile")
    (d / "loop2.runfile").symlink_to(d / "loop.runfile")


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        pytest.param(lambda d: (d / "x.runfile").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))), ["launch", "x.runfile"], "x.runfile:1: binary file", id="elf"),
        pytest.param(lambda d: (d / "x.runfile").write_bytes(b"echo a\necho b\necho \x00c\n"), ["launch", "x.runfile"], "x.runfile:3: binary file", id="nul-on-line-3"),
        pytest.param(lambda d: (d / "x.runfile").write_bytes(b"echo ok\necho caf\xe9\n"), ["launch", "x.runfile"], "x.runfile:2: not UTF-8", id="latin-1"),
        pytest.param(lambda d: (d / "x.runfile").write_bytes("echo ü\n".encode("utf-16")), ["launch", "x.runfile"], "x.runfile:1: binary file", id="utf-16"),
        pytest.param(lambda d: (d / "x.runfile").mkdir(), ["launch", "x.runfile"], "x.runfile: is a directory", id="directory"),
        pytest.param(lambda d: (d / "x.runfile").symlink_to(d / "nowhere"), ["launch", "x.runfile"], "x.runfile: no such runfile", id="dangling-symlink"),
        pytest.param(_make_symlink_loop, ["launch", "loop.runfile"], "loop.runfile: cannot read the runfile", id="symlink-loop"),
        pytest.param(lambda d: (d / "g.yml").write_text("a: &a [*a]\n"), ["sweep", "g.yml"], "g.yml:1: recursive alias", id="sweep-recursive-alias"),
        pytest.param(lambda d: (d / "g.yml").write_text("program: !!python/object/apply:os.system ['true']\nparameters: {}\n"), ["sweep", "g.yml"], "is not allowed", id="sweep-python-tag"),
        pytest.param(lambda d: (d / "g.yml").write_text("program: p\nparameters: {a: {values: [1]}}\nprogram: q\n"), ["sweep", "g.yml"], "g.yml:3: duplicate key 'program'", id="sweep-duplicate-key"),
        pytest.param(lambda d: (d / "g.yml").write_bytes(b"program: p\xff\n"), ["launch", "g.yml"], "g.yml:1: not UTF-8", id="launch-gridspec-not-utf8"),
    ],
)
def test_hostile_inputs_through_the_cli(workdir: Path, run_cli: RunCli, setup: Callable[[Path], object], args: list[str], expected: str) -> None:
    setup(workdir)
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("batchrun: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert expected in err, err

"""Record what the real tools make of the sweep notations, for tests/test_notation_tables.py.

    python tests/data/notation/generate.py            # bash, and GNU parallel if installed
    /path/to/venv-with-hydra-core/bin/python tests/data/notation/generate.py   # hydra too

Writes braces.json (bash's words for each brace word), parallel.json (the lines
`parallel --dry-run` prints) and hydra.json (Hydra's parser and basic sweeper:
each override's job values, or the error), beside this file. A table whose
tool is missing is left as it is. hydra-core is never a batchrun dependency:
install it in a separate venv to regenerate hydra.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Brace words: bash expands each (with globbing off); the tables keep its words.
BRACE_WORDS = [
    "{a,b}", "x{,a}", "{,a}", "--lr={0.1,0.01}", "--seed={1..5}", "{1..10..3}", "{-05..5..5}", "{a..e..2}",
    "{5..1}", "{01..3}", "{001..10..4}", "{a,b{1,2}}c", '"{x,y}"', "\\{p,q\\}", "${HOME:+{u,v}}", "{1..3}{a,b}",
    "{{a,b},c}", "{a}", "{a,}{b,}", "{1..2..0}", "{3..3}", "{1..-2}", "{Z..a}", "{a..c..-1}", "{\\,a,b}",
    "{a,\\,b}", "a{1,2}$(true){3,4}", "{a}b,c}", "'{'a,b}", "{a,b}'}'", "x{}y", "{}", "{a..z..30}", "{1..}",
    "{..3}", "{1..3..x}", "{+1..3}", "{1.5..3}", "{a,'b,c'}", '{a,"b c"}', "--opt={adam,sgd}_{1,2}",
    "{x,y}{1..2}{A,B}", "pre{a,b}post", "{-3..3..2}", "{10..0..-5}", "{a..A}", "{A..C}",
    "{0..9..3}x", "a{b,c{d,e{f,g}}}", "{a,b}\\,c", "{'a','b'}", "{1,2}${x}{3,4}", "${a,b}", "{$a,$b}",
    "{9223372036854775805..9223372036854775807}", "{2147483646..2147483648}", "{-1..1}", "{0..-0}",
]

# Commands for parallel --dry-run; FILES are created in its working directory first.
PARALLEL_FILES = {"f1": "f1a\nf1b\n", "f2": "f2a\nf2b\n", "f3": "a\n\nb", "spaces": "one two\n'quoted'\n"}
PARALLEL_CASES = [
    ["echo {}", ":::", "a b", "it's", 'x"y', "$HOME", "", "a;b", "'", "a''", "é", "a=b", "~x", "#x", "a\\b", "tab\there"],
    ["python train.py --lr {1} --seed {2}", ":::", "0.1", "0.01", ":::", "1", "2", "3"],
    ["echo {1} {2}", ":::", "a", "b", ":::", "1", "2", "3"],
    ["echo", ":::", "a", "b", ":::", "1", "2"],
    ["echo", "{}", ":::", "a", "b", ":::", "1", "2"],
    ["echo {1} {2}", ":::", "a", "b", "c", ":::+", "1", "2"],
    ["echo {1} {2}", ":::", "a", "b", ":::+", "1", "2", "3"],
    ["echo {3} {1}", ":::", "a", ":::", "b"],
    ["echo {.} {/} {//} {/.} {#} {1.}", ":::", "dir/f.txt", "d2/g.tar.gz", ".bashrc", "a.", "/x", "a/", "a//b", "", "a b/c.d e"],
    ["echo {+.} {..} {##}", ":::", "a.b.c"],
    ["echo", ":::", "a", ":::", "b", ":::+", "c", "d"],
    ["echo {#} {}", ":::", "a", ":::", "b"],
    ["echo {1 .} {-1} {2/.} {0}", ":::", "x.y", ":::", "d/e.f"],
    ["{}", ":::", "echo hi"],
    ["a={}", ":::", "x y"],
    ["echo out_{}", ":::", "p q", ":::", "r"],
    ["echo {}{}", ":::", "a", "b"],
    ["echo {.}", ":::", "a.x", ":::", "b.y"],
    ["echo", "{1}", "{2}", "::::", "f1", ":::", "x"],
    ["echo", "::::", "f1", "f2"],
    ["echo", ":::", "a", "::::+", "f1", "f2"],
    ["echo", ":::", "a", "b", "::::+", "f1"],
    ["echo", "::::", "f3"],
    ["echo {}", "::::", "spaces"],
    ["echo {-2}", ":::", "a", ":::", "b"],
    ["echo  two  spaces", ":::", "x"],
    ["echo {1}{}", ":::", "x", ":::", "y"],
    ["echo {-0}", ":::", "a", ":::", "b"],
    ["echo", "'{}'", ":::", "a b"],
    ["echo", '"{}"', ":::", "a b"],
    ["echo {//}", ":::", "/", "//a", "a/b/", "."],
    ["cmd", "--x={1}", "--y={2}", ":::", "1", "2", ":::+", "3", "4", ":::", "p"],
]

# Hydra overrides: the parser's verdict and the basic sweeper's job values.
HYDRA_CASES = [
    ["lr=0.1,0.01", "seed=range(1,4)"],
    ["seed=range(5)"], ["x=range(0,1,0.25)"], ["x=range(1,2,0.1)"], ["x=range(5,0,-2)"], ["x=range(0,1.5)"],
    ["x=choice(a,b,c)"], ["x=a,b", "y=1,2", "z=true,false"], ["x=sort(3,1,2)"], ["x=sort(3,1,2,reverse=true)"],
    ["x=sort(range(5,0,-1))"], ["x=int(range(1,3))"], ["x=float(1,2)"], ["x=str(1,2.5,true)"], ["x=bool(0,1)"],
    ["x=tag(a,b,choice(1,2))"], ["x=[1,2],[3,4]"], ["x={a:1,b:2},{a:3}"], ["x='a b','c,d'", "y=\"q'q\",r"],
    ["x=${y},${z.w}"], ["x=a\\,b,c"], ["x=a b,c d"], ["x= 1 , 2 "], ["+new=1,2"], ["++force=1,2"],
    ["db=mysql,postgresql", "db.user=me"], ["hydra/launcher=basic,joblib"], ["x@pkg=1,2"], ["~x"], ["~x=1"],
    ["x=null,NULL,None"], ["x=1e-3,1_000,-0.5,+1,inf,nan"], ["x=01,1.,.5"], ["x=interval(0,1)"], ["x=glob(*)"],
    ["x=choice()"], ["x=choice(choice(1,2))"], ["x=range(1,'a')"], ["x=unknown(1)"], ["x=[1,2"], ["x=(1)"],
    ["x=a,,b"], ["x="], ["x=1", "y=a,b"], ["x=choice([1,2],[3])"], ["x=shuffle(1,2,3)"], ["x=range(3,1)"],
    ["x=a:b,c:d"], ["x='\\''"], ["x=\"a\\\\\"", "y=1,2"], ["x=/path/a,/path/b"], ["x=$y,%z"], ["x=a-b,c_d"],
    ["key.with.dots=1,2"], ["x=true,TRUE,False"], ["x=range(0,10,3)", "y=a,b"], ["x=1,2", "x=3"],
]


def record_braces() -> None:
    table = []
    for word in BRACE_WORDS:
        out = subprocess.run(["bash", "-c", "set -f; printf '%s\\0' " + word], capture_output=True, check=True).stdout
        table.append({"word": word, "bash": [w.decode() for w in out.split(b"\0")[:-1]]})
    version = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=True).stdout.strip()
    _write("braces.json", {"tool": f"bash {version}", "cases": table})


def record_parallel() -> None:
    if shutil.which("parallel") is None:
        print("GNU parallel not found: parallel.json left as it is")
        return
    version = subprocess.run(["parallel", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in PARALLEL_FILES.items():
            Path(tmp, name).write_text(text)
        for words in PARALLEL_CASES:
            out = subprocess.run(["parallel", "--will-cite", "--keep-order", "--dry-run", *words], cwd=tmp, capture_output=True, text=True, check=True)
            table.append({"words": words, "lines": out.stdout.splitlines()})
    _write("parallel.json", {"tool": version, "files": PARALLEL_FILES, "cases": table})


def record_hydra() -> None:
    try:
        from hydra import __version__ as hydra_version
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError:
        print("hydra-core not importable here: hydra.json left as it is")
        return
    parser = OverridesParser.create()
    table = []
    for overrides in HYDRA_CASES:
        case: dict[str, object] = {"overrides": overrides}
        try:
            parsed = parser.parse_overrides(overrides)
            case["sweep"] = [o.is_sweep_override() for o in parsed]
            case["jobs"] = BasicSweeper.split_arguments(parsed, None)[0]
        except Exception as err:  # noqa: BLE001 - the verdict is what is recorded
            case["error"] = type(err).__name__
        table.append(case)
    _write("hydra.json", {"tool": f"hydra-core {hydra_version}", "cases": table})


def _write(name: str, data: object) -> None:
    (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {HERE / name}")


if __name__ == "__main__":
    record_braces()
    record_parallel()
    record_hydra()
    sys.exit(0)

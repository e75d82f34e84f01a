"""The package's layout holds: folders import only the folders below them, and only `_doit` imports doit.

README ("Layout") lists the folders from the top down; a folder may import
itself, the top-level modules and any folder listed below it. These checks
read the source with `ast`, so they cost no imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "batchrun"
# From the top down, as README's "Layout" lists them.
FOLDERS = ["cli", "ui", "_doit", "results", "status", "launch", "store", "runfile", "executors", "sweeps", "metrics"]
# Modules at the top, which any folder may import.
TOP = {"errors", "_signals", "_memory", "atomic", "liveness", "resources", "__init__"}
# Most doit and nox modules are under this; past it a module is split.
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module == "batchrun":
                names += [f"batchrun.{alias.name}" for alias in node.names]
    return names


def _folder(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_folder_is_listed() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} - {"templates"}
    assert folders == set(FOLDERS)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_folder_imports_one_above_it(path: Path) -> None:
    here = _folder(path)
    if here not in FOLDERS:
        return  # the top-level modules (dodo, __main__) sit above everything
    allowed = set(FOLDERS[FOLDERS.index(here) :]) | TOP
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "batchrun" or len(parts) == 1:
            continue
        if parts[1] in ("log", "summary", "__version__"):
            continue  # `from batchrun import log`: the package's own names
        assert parts[1] in allowed, f"{path.relative_to(PACKAGE)} imports {name}: {parts[1]}/ is above {here}/"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_doit_folder_imports_doit(path: Path) -> None:
    if _folder(path) == "_doit":
        return
    doit = [name for name in _imports(path) if name == "doit" or name.startswith("doit.")]
    assert not doit, f"{path.relative_to(PACKAGE)} imports {doit}; doit stays behind batchrun/_doit"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    assert path.read_text().count("\n") <= MAX_LINES, f"{path.relative_to(PACKAGE)} is over {MAX_LINES} lines: split it"

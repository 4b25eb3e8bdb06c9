"""The project's shape: installable, every script runs from the repository root without path
tricks, pages only wire, and the library does not drag Streamlit in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_imports_from_pages():
    sources = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts]
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if any(m == "pages" or m.startswith("pages.") for m in imported_modules(p))]
    assert offenders == []
    assert not (ROOT / "pages" / "__init__.py").exists()


def test_only_the_app_layer_imports_streamlit():
    library = [p for p in (ROOT / "afm").rglob("*.py") if "app" not in p.relative_to(ROOT / "afm").parts]
    offenders = [str(p.relative_to(ROOT)) for p in library if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_layers_do_not_import_upwards():
    """data -> models -> train -> analysis -> figures: a lower layer never imports a higher one."""
    order = ["afm.data", "afm.models", "afm.train", "afm.analysis", "afm.figures"]
    for rank, layer in enumerate(order):
        folder = ROOT / Path(*layer.split("."))
        files = list(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
        for path in files:
            imported = imported_modules(path)
            higher = [m for m in imported for upper in order[rank + 1:] if m == upper or m.startswith(upper + ".")]
            assert higher == [], f"{path.relative_to(ROOT)} imports {higher}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_every_bench_script_runs_from_the_repository_root(script):
    done = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_the_package_is_installed_not_found_by_path():
    """`pip install -e .` is the way in: the package resolves from any working directory."""
    done = subprocess.run([sys.executable, "-c", "import afm.cli, afm.paths; print(afm.paths.CHECKOUT)"],
                          cwd="/", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_rooms_stay_small():
    """No module of afm/ over 450 lines, no function of afm/ or pages/ over 80, no page over 150:
    a file holds one idea, and a page only wires widgets to afm."""
    library = sorted((ROOT / "afm").rglob("*.py"))
    pages = sorted((ROOT / "pages").glob("*.py"))
    big_modules = [(str(p.relative_to(ROOT)), n) for p in library if (n := len(p.read_text().splitlines())) > 450]
    big_pages = [(str(p.relative_to(ROOT)), n) for p in pages if (n := len(p.read_text().splitlines())) > 150]
    long_functions = [(str(p.relative_to(ROOT)), name, n) for p in library + pages for name, n in _functions(p)
                      if n > 80]
    assert big_modules == [] and big_pages == [] and long_functions == [], (big_modules, big_pages, long_functions)

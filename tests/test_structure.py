"""The project's shape: installable, every script runs from the repository root without path
tricks, pages only wire, the library does not drag Streamlit in, imports go one way (no circles)
and reading a CSV walks through few modules."""

from __future__ import annotations

import ast
import json
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


def afm_import_graph() -> dict[str, set[str]]:
    """Module -> the afm modules it names in an import: every `import` and `from ... import` of
    every afm/**/*.py, those inside functions and under TYPE_CHECKING included (a package's
    __init__ is the module `afm.x`; `from afm.x import y` is `afm.x.y` where y is a module)."""
    files = {}
    for path in (ROOT / "afm").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
        graph[module] = {target for name in names if name.split(".")[0] == "afm"
                         if (target := known(name)) is not None and target != module}
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a -> b -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            return circle
    return None


def test_no_module_of_afm_imports_itself_back():
    """Imports go one way: no afm module imports (even inside a function, or for types only) a
    module that imports it back, directly or through others."""
    graph = afm_import_graph()
    assert "afm.data.tabular" in graph["afm.data.stream"]  # the graph sees imports at all
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


CSV_READ = """
import json, sys
from pathlib import Path
import afm.data
from afm.data.stream import iter_rows

path = Path(sys.argv[1])
path.write_text("user,item,price,label\\n" + "".join(f"u{i % 5},i{i % 3},{i * 1.5},{'yes' if i % 2 else 'no'}\\n"
                                                    for i in range(40)))

def modules_run(read):
    seen = set()
    def note(frame, event, arg):
        if event == "call":
            seen.add(frame.f_globals.get("__name__", ""))
    sys.setprofile(note)
    try:
        result = read()
    finally:
        sys.setprofile(None)
    return sorted(m for m in seen if m.startswith("afm.")), result

loaded, dataset = modules_run(lambda: afm.data.load_dataset(str(path)))
streamed, _ = modules_run(lambda: list(iter_rows(path, dataset.schema)))
print(json.dumps({"load_dataset": loaded, "iter_rows": streamed}))
"""


def test_a_csv_read_walks_at_most_three_modules_of_afm_data(tmp_path):
    """Reading a CSV (`load_dataset`, and the stream that scores one) runs code in at most three
    modules of afm/data besides the dataset types and schemas (`splits`, `schema`): followed as it
    runs, every function called, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", CSV_READ, str(tmp_path / "x.csv")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    base = {"afm.data", "afm.data.schema", "afm.data.splits"}
    for read, modules in json.loads(done.stdout).items():
        walked = [m for m in modules if m.startswith("afm.data.") and m not in base]
        assert "afm.data.tabular" in walked, (read, modules)  # the trace sees the read at all
        assert len(walked) <= 3, f"{read} runs code in {walked}"

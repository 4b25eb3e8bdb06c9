"""examples/quickstart.ipynb runs from top to bottom as a reader would run it: executed with
nbclient in a kernel of this test's own Python (a kernel spec written to a temporary
JUPYTER_PATH, ahead of any the machine has), with no error output, the summary's sentence
printed and a figure shown. The notebook is stored without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"

FIGURE_TYPES = ("application/vnd.plotly.v1+json", "image/png", "image/svg+xml")


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch) -> str:
    """The name of a kernel that runs sys.executable (this venv's Python)."""
    spec = tmp_path / "jupyter" / "kernels" / "afm-test-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "afm test python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the checkout's afm, installed or not
    return "afm-test-python"


def test_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_quickstart_runs(kernel_of_this_python):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=kernel_of_this_python, timeout=300,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, "\n".join(f"{e.ename}: {e.evalue}" for e in errors)
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "pairs that matter" in text
    shown = [output for output in outputs if output.output_type in ("display_data", "execute_result")]
    assert any(kind in output.data for output in shown for kind in FIGURE_TYPES), [list(o.data) for o in shown]
    cross_validated = [output.data["text/plain"] for output in shown if "array(" in output.data.get("text/plain", "")]
    assert cross_validated, "cross_val_score's scores are shown"
    assert "x" in shown[-1].data["text/plain"]  # pair_importances_: "site x hour ..."

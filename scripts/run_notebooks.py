"""Execute the notebooks in full mode and store them with their outputs, so they show on the web.

    .venv/bin/python scripts/run_notebooks.py                 # every notebook in notebooks/
    .venv/bin/python scripts/run_notebooks.py quickstart      # one

Needs the dev and local-small extras. Each runs in a fresh kernel with notebooks/ as its working
directory and an empty DSPy cache, as a new user's first run would; the files it writes there
(reports, plots) are removed afterwards. Progress bars print a line per update where no notebook
widgets are installed: each bar is stored in its final state, as a terminal would show it; nothing
else is changed. CI runs the notebooks in quick mode without storing them (tests/test_notebooks.py).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BAR = re.compile(r"^([^:\n]+): .*\[\d+:\d\d")  # a tqdm line: "<description>: ... [mm:ss..."


def final_bars(notebook) -> None:
    """Each progress bar's updates collapsed to its last, in every cell's stream output."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs, bar = [], None
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                lines = [line for line in output.text.split("\n") if line.strip()] or [""]
                match = BAR.match(lines[-1]) if len(lines) == 1 else None
                if match and bar == (output.name, match.group(1)):
                    outputs[-1] = output  # the same bar, updated: keep its latest state
                    continue
                bar = (output.name, match.group(1)) if match else None
                if not output.text.strip():
                    continue
            else:
                bar = None
            outputs.append(output)
        cell.outputs = outputs


def run(path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        NotebookClient(notebook, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": workdir}}).execute()
    notebook.metadata.pop("widgets", None)
    final_bars(notebook)
    nbformat.write(notebook, path)
    print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)


def main(names: list[str]) -> int:
    os.environ.pop("DSPY_FGO_QUICK", None)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DSPY_CACHEDIR"] = cache
        for path in sorted(NOTEBOOKS.glob("*.ipynb")):
            if not names or path.stem in names:
                run(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""A cell's compile across attempts: what a killed attempt spent, so that its resume can pay for it.

An FGO cell takes about an hour here and a session may stop it anywhere. While a cell compiles, its
``.started`` marker is rewritten every ``HEARTBEAT_S`` seconds with the compile's wall time and
billed usage so far. A rerun finds the marker, resumes (FGO from its checkpoint, the others from
DSPy's cache), and adds the earlier attempts' figures to its own: the cell then records what the
whole compile cost, less at most ``HEARTBEAT_S`` seconds of each killed attempt, and plus the
replay of that attempt's calls, which costs little. A marker from before this (plain text) gives
no figures: that cell's cost stays partial.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable

HEARTBEAT_S = 30.0


def combine_usage(*usages: dict) -> dict:
    """Usage dicts added up (calls, tokens, cost); peaks take the largest."""
    keys = {k for u in usages for k, v in u.items() if isinstance(v, (int, float))}
    return {k: (max if k.startswith("peak") else sum)(u.get(k, 0) for u in usages) for k in sorted(keys)}


class Marker:
    """The ``.started`` file of a cell in flight: earlier attempts' figures, and this attempt's so far."""

    def __init__(self, path: Path, code_version: str | None = None):
        self.path, self.code_version = path, code_version
        self.resumed = path.exists()
        self.earlier: list[dict] | None = [] if not self.resumed else _earlier(path)
        self._write(None)

    def record(self, snapshot: dict) -> None:
        """This attempt's figures so far (``compile_wall_s``, ``optimizer_usage``, ``task_usage``)."""
        self._write({**snapshot, "code_version": self.code_version})

    def _write(self, current: dict | None) -> None:
        state = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "earlier": self.earlier, "current": current}
        tmp = self.path.with_suffix(".started.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)  # atomic: a kill mid-write keeps the previous figures

    def add_earlier(self, cell: dict) -> None:
        """Add the earlier attempts' wall time and usage to a finished cell's, when all are known; each
        attempt keeps the code it ran (``code_version``)."""
        if not self.earlier:
            return
        cell["earlier_attempts"] = self.earlier
        cell["own_attempt_compile_wall_s"] = cell["compile_wall_s"]
        cell["compile_wall_s"] = round(cell["compile_wall_s"] + sum(a["compile_wall_s"] for a in self.earlier), 1)
        for key in ("optimizer_usage", "task_usage"):
            cell[key] = combine_usage(cell.get(key) or {}, *(a.get(key) or {} for a in self.earlier))
        cell["cost_over_attempts"] = 1 + len(self.earlier)

    def done(self) -> None:
        self.path.unlink()


def _earlier(path: Path) -> list[dict] | None:
    """The figures of every attempt before this one, or None from a marker that has none (written
    before markers kept figures). An attempt killed before its first heartbeat spent under
    ``HEARTBEAT_S`` seconds and counts as 0."""
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(state, dict) or state.get("earlier") is None:
        return None
    current = state.get("current") or {"compile_wall_s": 0.0}
    return state["earlier"] + [current]


class Heartbeat:
    """Calls ``beat()`` every ``every`` seconds while the block runs, and once when it ends."""

    def __init__(self, beat: Callable[[], None], every: float = HEARTBEAT_S):
        self.beat, self.every = beat, every
        self._stop = threading.Event()

    def __enter__(self):
        def loop():
            while not self._stop.wait(self.every):
                self.beat()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.beat()

"""Checkpoints: each partition after every epoch, every finished partition and merge node, written
atomically as JSON.

A compile with ``checkpoint_dir`` writes a manifest holding a fingerprint of its data and
settings; each finished unit of work is written as ``<kind>-<key>.json`` through a temporary file
and ``os.replace``, so a killed process leaves either the whole file or none. Running the same
compile again reuses what is there and redoes nothing finished. A directory written for other
data or settings is refused, never silently reused. Only JSON is read back: nothing is unpickled
or executed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

MANIFEST = "manifest.json"


class Checkpoint:
    def __init__(self, directory: str | os.PathLike, run_fingerprint: str, description: dict):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / MANIFEST
        if manifest.exists():
            saved = json.loads(manifest.read_text())
            if saved.get("fingerprint") != run_fingerprint:
                raise ValueError(
                    f"checkpoint_dir {str(self.directory)!r} holds a run with different data or settings "
                    f"(fingerprint {saved.get('fingerprint', '?')[:12]} != {run_fingerprint[:12]}); "
                    "use another directory or delete this one"
                )
        else:
            self._write(manifest, {"fingerprint": run_fingerprint, **description})
        self.reused = 0

    def load(self, kind: str, key: str, finished: bool = True) -> dict | None:
        """The saved unit, or None; ``finished=False`` for the state of one still in progress."""
        path = self.directory / f"{kind}-{key}.json"
        if not path.exists():
            return None
        self.reused += finished
        return json.loads(path.read_text())

    def save(self, kind: str, key: str, data: dict) -> None:
        self._write(self.directory / f"{kind}-{key}.json", data)

    @staticmethod
    def _write(path: Path, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

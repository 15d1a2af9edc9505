"""A stable hash of JSON-able values: what names a compile's data and settings, and a merge node's inputs."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (objects fall back to their repr-free type name)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=_name)
    return hashlib.sha256(blob.encode()).hexdigest()


def _name(value: Any) -> str:
    if hasattr(value, "toDict"):
        return json.dumps(value.toDict(), sort_keys=True, default=str)
    return getattr(value, "model", None) or getattr(value, "__qualname__", None) or type(value).__qualname__

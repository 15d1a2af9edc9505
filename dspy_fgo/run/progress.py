"""Where a long compile is: a progress bar per stage, in a terminal or a notebook.

Each stage (partitions, merges, the final check, a baseline's steps) gets one bar whose postfix
shows the LM calls and tokens spent so far and the latest partition or merge. The bars are off in
CI (the ``CI`` environment variable), when ``DSPY_FGO_QUIET`` is set, when stderr is not a
terminal outside a notebook, or when the optimizer is given ``progress=False``. Milestones are
also logged under the ``dspy_fgo`` logger, so a quiet run can still be followed in its logs.
"""

from __future__ import annotations

import os
import sys
import threading

from dspy_fgo.run.accounting import Meters


def wanted(setting: bool | None) -> bool:
    """The user's ``progress`` setting, or (``None``) bars only where someone is watching."""
    if setting is not None:
        return bool(setting)
    if os.environ.get("CI") or os.environ.get("DSPY_FGO_QUIET"):
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class Progress:
    def __init__(self, enabled: bool, meters: Meters):
        self.enabled, self.meters = enabled, meters
        self.bar = None
        self.info: dict[str, str] = {}
        self._lock = threading.Lock()

    def stage(self, description: str, total: int | None = None, unit: str = "step") -> None:
        """Start a new bar (closing the previous one)."""
        with self._lock:
            self._close()
            self.info = {}
            if self.enabled:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, leave=True,
                                disable=False)  # asked for: not even TQDM_DISABLE turns it off

    def advance(self, steps: int = 1, **info) -> None:
        """``steps`` more done; ``info`` (e.g. the partition and its scores) joins the postfix."""
        self.note(**info)
        with self._lock:
            if self.bar is not None:
                self.bar.update(steps)

    def note(self, **info) -> None:
        """Update the postfix without advancing (an epoch finished inside a partition, ...)."""
        with self._lock:
            self.info.update({k: str(v) for k, v in info.items()})
            if self.bar is not None:
                calls, tokens, _ = self.meters.totals()
                self.bar.set_postfix(lm_calls=calls, tokens=tokens, **self.info)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""Screening: run a proposal only as far as it could still win.

A proposal is accepted only when it scores higher on the held-out checks than the kept candidate.
It can do better only where the kept candidate is not perfect, so it is run there first; when it
does no better there, it cannot win on the whole set (on the rest the kept one already scores 1),
and the rest is never run. The decision is exactly the full evaluation's; only task calls are saved.
"""

from __future__ import annotations

from typing import Any, Sequence

import dspy

from dspy_fgo.candidate import Candidate
from dspy_fgo.runtime import Runtime, Trajectory

Items = Sequence[tuple[Any, dspy.Example]]


def score_if_it_can_win(rt: Runtime, proposal: Candidate, checks: Items,
                        kept: Sequence[Trajectory]) -> float | None:
    """The proposal's mean score on ``checks``, or None when it cannot beat ``kept`` (the kept
    candidate's runs on the same checks, in order) and was run only on the checks ``kept`` misses."""
    missed = [(item, run.score) for item, run in zip(checks, kept) if run.score < 1.0]
    if len(missed) < len(checks):  # somewhere the kept candidate is perfect: worth screening first
        tried = rt.evaluate(proposal, [item for item, _ in missed])
        if sum(run.score for run in tried) <= sum(score for _, score in missed):
            return None
    return rt.score(proposal, checks)

"""Screening: run a proposal only as far as it could still win.

A proposal is accepted only when it is ``clearly_better`` than the kept candidate on the held-out
checks (a paired sign test). It can win only where the kept candidate is not perfect, so it is run
there first; when even a tie everywhere else would leave it short of the test, running the rest
could only add losses, and the rest is never run. The decision is exactly the full evaluation's;
only task calls are saved.
"""

from __future__ import annotations

from typing import Any, Sequence

import dspy

from dspy_fgo.candidate import Candidate
from dspy_fgo.runtime import Runtime, Trajectory
from dspy_fgo.significance import Z, clearly_better

Items = Sequence[tuple[Any, dspy.Example]]


def scores_if_it_can_win(rt: Runtime, proposal: Candidate, checks: Items,
                         kept: Sequence[Trajectory], z: float = Z) -> list[float] | None:
    """The proposal's score on each of ``checks``, or None when it cannot be clearly better than
    ``kept`` (the kept candidate's runs on the same checks, in order) and was run only where ``kept`` misses."""
    old = [run.score for run in kept]
    missed = [i for i, score in enumerate(old) if score < 1.0]
    if len(missed) < len(checks):  # somewhere the kept candidate is perfect: worth screening first
        tried = rt.evaluate(proposal, [checks[i] for i in missed])
        best_case = list(old)  # a tie wherever it was not run: the most the rest could give
        for i, run in zip(missed, tried):
            best_case[i] = run.score
        if not clearly_better(best_case, old, z):
            return None
    return rt.item_scores(proposal, checks)

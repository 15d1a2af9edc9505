"""Demos from FGO's own runs: a run that scored 1 is a demonstration at no extra LM call.

As in DSPy's ``BootstrapFewShot``, each predictor call of a successful run (its inputs and its
outputs) becomes a demo for that predictor; the room left is filled with labeled examples whose
run failed (their inputs and gold outputs), for predictors whose every field the example holds,
as ``BootstrapFewShot``'s ``max_labeled_demos`` does. Within each kind the shortest demos are taken
first: every later call of the program pays for its demos' tokens, and a short demo shows the
format as well as a long one. Demos ride in the candidate as JSON under
``"<predictor>::demos"``; whether a partition keeps them is decided by validation, like any other
change (``dspy_fgo.reflect``).
"""

from __future__ import annotations

import json
from typing import Sequence

import dspy

from dspy_fgo.candidate import DEMOS, Candidate, is_text_key
from dspy_fgo.tools import is_tool_key
from dspy_fgo.runtime import Trajectory


def demos_from_runs(candidate: Candidate, trajectories: Sequence[Trajectory], max_demos: int,
                    program: dspy.Module | None = None) -> Candidate:
    """Up to ``max_demos`` demos per predictor: from runs that scored 1, then (given ``program``, to
    read its signatures) labeled examples of failed runs.

    Returns only the demo keys it sets; an empty dict when there is nothing to show. The shortest
    demos of each kind are chosen, ties in run order, so the choice is deterministic.
    """
    predictors = [k for k in candidate if is_text_key(k) and not is_tool_key(k)]
    solved: dict[str, list[dict]] = {name: [] for name in predictors}
    labeled: dict[str, list[dict]] = {name: [] for name in predictors}
    for trajectory in trajectories:
        if trajectory.score < 1.0 or trajectory.error:
            continue
        for step in trajectory.steps:
            if step.predictor in solved:
                solved[step.predictor].append({**_plain(step.inputs), **_plain(step.outputs), "augmented": True})
    if program is not None:
        signatures = {name: p.signature for name, p in program.named_predictors()}
        for trajectory in trajectories:
            if trajectory.score >= 1.0 and not trajectory.error:
                continue
            example = trajectory.example.toDict()
            for name in predictors:
                fields = list(signatures[name].fields) if name in signatures else []
                if fields and all(f in example for f in fields):
                    labeled[name].append(_plain({f: example[f] for f in fields}))
    found = {name: _shortest(solved[name], max_demos) for name in predictors}
    for name, demos in found.items():
        demos += [d for d in _shortest(labeled[name], max_demos) if d not in demos][:max_demos - len(demos)]
    return {name + DEMOS: json.dumps(demos, ensure_ascii=False, sort_keys=True, default=str)
            for name, demos in found.items() if demos}


def _shortest(demos: list[dict], n: int) -> list[dict]:
    """The ``n`` shortest distinct demos, in their original order (a stable choice)."""
    distinct = [d for i, d in enumerate(demos) if d not in demos[:i]]
    size = {i: len(json.dumps(d, ensure_ascii=False, default=str)) for i, d in enumerate(distinct)}
    keep = sorted(sorted(size, key=lambda i: (size[i], i))[:n])
    return [distinct[i] for i in keep]


def without_own_demos(candidate: Candidate, example: dspy.Example) -> Candidate:
    """``candidate`` without the demos made from ``example``, so that running ``example`` cannot copy
    its answer from the prompt (``BootstrapFewShot`` leaves the example out the same way). A demo is
    the example's when it has one of the example's input fields and agrees on every such field."""
    inputs = _plain(example.inputs().toDict())
    kept = {}
    for key, value in candidate.items():
        if is_text_key(key):
            continue
        demos = json.loads(value)
        own = [d for d in demos if any(f in d for f in inputs) and all(d[f] == inputs[f] for f in inputs if f in d)]
        if own:
            kept[key] = json.dumps([d for d in demos if d not in own], ensure_ascii=False, sort_keys=True, default=str)
    return {**candidate, **kept}


def demo_count(candidate: Candidate) -> int:
    return sum(len(json.loads(v)) for k, v in candidate.items() if not is_text_key(k))


def _plain(values: dict) -> dict:
    """JSON-safe field values (a tool's args dict stays a dict; anything else unusual becomes text)."""
    return json.loads(json.dumps(dict(values), ensure_ascii=False, default=str))

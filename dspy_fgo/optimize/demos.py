"""Demos from FGO's own runs: a run that scored 1 is a demonstration at no extra LM call.

As in DSPy's ``BootstrapFewShot``, each predictor call of a successful run (its inputs and its
outputs) becomes a demo for that predictor; the room left is filled with labeled examples whose
run failed (their inputs and gold outputs), for predictors whose every field the example holds,
as ``BootstrapFewShot``'s ``max_labeled_demos`` does. Within each kind the shortest demos are taken
first: every later call of the program pays for its demos' tokens, and a short demo shows the
format as well as a long one. Where the examples' gold answers repeat (a yes/no or multiple-choice
task), every answer gets the same number of demos (``balance``): a prompt whose demos mostly share
one answer pulls the model towards it (majority-label bias, Zhao et al. 2021, "Calibrate Before
Use"), and a partition's few solved and failed runs are rarely balanced (3 of 4 failed runs with
one answer is common). Demos ride in the candidate as JSON under
``"<predictor>::demos"``; whether a partition keeps them is decided by validation, like any other
change (``dspy_fgo.optimize.reflect``).
"""

from __future__ import annotations

import json
from typing import Sequence

import dspy

from dspy_fgo.candidate import DEMOS, SOURCE, Candidate, is_text_key, plain_values, source_of
from dspy_fgo.run.runtime import Trajectory
from dspy_fgo.tools import is_tool_key


def demos_from_runs(candidate: Candidate, trajectories: Sequence[Trajectory], max_demos: int,
                    program: dspy.Module | None = None, balance: bool = True, counters=None) -> Candidate:
    """Up to ``max_demos`` demos per predictor: from solved runs (``Trajectory.solved``), then (given ``program``, to
    read its signatures) labeled examples of failed runs.

    Returns only the demo keys it sets; an empty dict when there is nothing to show. The shortest
    demos of each kind are chosen, ties in run order, so the choice is deterministic. With
    ``balance``, a predictor whose outputs the examples label (``answer`` in ``question -> answer``;
    not a ``reasoning`` or a ReAct step) gets as many demos of each distinct gold answer as the
    rarest one has, within ``max_demos`` (see ``balanced``); ``counters`` (a report's counter), when
    given, counts each such predictor whose demos balancing changed as ``demo_sets_balanced``.
    """
    predictors = [k for k in candidate if is_text_key(k) and not is_tool_key(k)]
    solved: dict[str, list[Demo]] = {name: [] for name in predictors}
    labeled: dict[str, list[Demo]] = {name: [] for name in predictors}
    for trajectory in trajectories:
        if not trajectory.solved:
            continue
        for step in trajectory.steps:
            if step.predictor in solved:
                demo = {**plain_values(step.inputs), **plain_values(step.outputs), "augmented": True,
                        SOURCE: source_of(trajectory.example)}
                kept = solved[step.predictor]
                kept.append((demo, gold_answer(trajectory.example, step.outputs), (0, len(kept))))
    if program is not None:
        signatures = {name: p.signature for name, p in program.named_predictors()}
        for trajectory in trajectories:
            if trajectory.solved:
                continue
            example = trajectory.example.toDict()
            for name in predictors:
                fields = list(signatures[name].fields) if name in signatures else []
                if fields and all(f in example for f in fields):
                    demo = {**plain_values({f: example[f] for f in fields}), SOURCE: source_of(trajectory.example)}
                    answer = gold_answer(trajectory.example, signatures[name].output_fields)
                    labeled[name].append((demo, answer, (1, len(labeled[name]))))
    found = {}
    for name in predictors:
        pool = _shortest_first(solved[name])
        pool += [d for d in _shortest_first(labeled[name]) if d[0] not in [p[0] for p in pool]]
        chosen = balanced(pool, max_demos) if balance else pool[:max_demos]
        if counters is not None and chosen != pool[:max_demos]:
            counters.add("demo_sets_balanced")  # fewer demos, each gold answer as often as the rarest
        found[name] = [demo for demo, _, _ in sorted(chosen, key=lambda d: d[2])]  # solved first, in run order
    return {name + DEMOS: json.dumps(demos, ensure_ascii=False, sort_keys=True, default=str)
            for name, demos in found.items() if demos}


Demo = tuple  # (its fields, its example's gold answer or None, (0 solved / 1 labeled, run order))


def gold_answer(example: dspy.Example, output_fields) -> tuple | None:
    """The example's labels for the predictor's output fields, normalized; None when it has none
    (an intermediate step, a ``reasoning``): then nothing is balanced."""
    return normalized_label([example.get(f) for f in output_fields if f in example])


def normalized_label(values: Sequence) -> tuple | None:
    """Label values compared as answers: whitespace collapsed, lowercased; None for no values."""
    return tuple(" ".join(str(v).split()).lower() for v in values) if values else None


def balanced(pool: list[Demo], n: int) -> list[Demo]:
    """At most ``n`` of ``pool`` (taken in its order of preference) with the same number of demos of
    every gold answer: as many as the rarest answer has, or as ``n`` allows; one each of the first
    ``n`` answers when there are more answers than room. A pool whose answers are all distinct or
    unlabeled is cut at ``n`` as it is."""
    groups: dict = {}
    for demo in pool:
        groups.setdefault(demo[1], []).append(demo)
    if None in groups or len(groups) == len(pool):
        return pool[:n]
    per = max(1, min(n // len(groups), min(map(len, groups.values()))))
    return [group[i] for i in range(per) for group in groups.values()][:n]


def _shortest_first(demos: list[Demo]) -> list[Demo]:
    """The distinct demos, shortest first, ties in their original order."""
    distinct = [d for i, d in enumerate(demos) if d[0] not in [e[0] for e in demos[:i]]]
    return sorted(distinct, key=lambda d: len(json.dumps(d[0], ensure_ascii=False, default=str)))


def demo_count(candidate: Candidate) -> int:
    return sum(len(json.loads(v)) for k, v in candidate.items() if not is_text_key(k))

"""Any DSPy teleprompter as FGO's per-partition optimizer (``FGO(inner=...)``).

``inner`` is a factory ``seed -> teleprompter``, so each partition gets a fresh instance with its
own seed. The teleprompter compiles a copy of the student on the partition's examples, with the
partition's held-out examples as its valset (its own examples when it has none); its result,
instructions and demos, becomes that partition's candidate for the merge. Its LM calls are counted under the "inner" role.
"""

from __future__ import annotations

import inspect
from typing import Callable

import dspy

from dspy_fgo.candidate import Candidate, apply_candidate, read_candidate
from dspy_fgo.optimize.reflect import ReflectResult
from dspy_fgo.run.runtime import Runtime, mean
from dspy_fgo.tools import is_tool_key


def optimize_with_inner(
    rt: Runtime, inner: Callable[[int], object], seed: int, student: dspy.Module, start: Candidate, items,
    checks=None,
) -> tuple[ReflectResult, str]:
    """Compile the partition with a fresh inner teleprompter; keep the start if it does better on
    ``checks`` (the partition's held-out examples; its own examples when there are none)."""
    teleprompter = inner(seed)
    if not callable(getattr(teleprompter, "compile", None)):
        raise TypeError(f"inner must be a factory seed -> teleprompter; it returned {type(teleprompter).__name__}")
    examples = [example for _, example in items]
    kwargs = {"trainset": examples}
    if "valset" in inspect.signature(teleprompter.compile).parameters:
        kwargs["valset"] = [example for _, example in checks] if checks else examples
    with rt.meters.metered("inner", rt.task_lm):
        compiled = teleprompter.compile(apply_candidate(student, start), **kwargs)
    candidate = read_candidate(compiled, tools=any(map(is_tool_key, start)))
    judged_on = list(checks) if checks else list(items)
    before, after = mean(rt.item_scores(start, judged_on)), mean(rt.item_scores(candidate, judged_on))
    best, score = (candidate, after) if after >= before else (dict(start), before)
    return (ReflectResult(candidate=best, score=score, baseline_score=before, checks=[k for k, _ in judged_on]),
            type(teleprompter).__name__)


def compile_with(teleprompter, **compile_kwargs):
    """``teleprompter`` with extra arguments for its ``compile`` (FGO passes only the data).

    For example ``inner=lambda seed: compile_with(dspy.MIPROv2(metric, auto=None, num_candidates=3,
    seed=seed), num_trials=3, minibatch=False)``.
    """
    compile_ = teleprompter.compile

    def compile(student, *, trainset, valset=None):
        return compile_(student, trainset=trainset, valset=valset, **compile_kwargs)

    teleprompter.compile = compile
    return teleprompter

"""From runs to lessons: critique the runs, then distill the critiques into a short list.

The rewrite never reads every run of a partition. It reads a task description inferred once from a
bounded sample, and lessons: critiques of the runs (one call per run, the paper's evaluator, or
one call per group of runs), condensed in groups of bounded size, level by level, until one short
list remains. So no optimizer prompt grows with the partition, and no run is dropped unread: the
report counts the runs critiqued and the texts condensed.
"""

from __future__ import annotations

from typing import Any, Sequence

import dspy

from dspy_fgo.candidate import Candidate, describe_predictor, is_text_key
from dspy_fgo.optimize.prompts import Budget, _fields, clip, format_run, instructions_text
from dspy_fgo.optimize.signatures import CritiqueRun, CritiqueRuns, DescribeTask, DistillLessons
from dspy_fgo.run.accounting import Counters
from dspy_fgo.run.runtime import Runtime, Trajectory

CRITIQUE_MAX_TOKENS = 300  # a critique is a few sentences; a cap keeps a rambling model from stalling a run
LESSONS_MAX_CHARS = 1200  # the lessons the rewrite reads: a few bullet points
RUNS_PER_CRITIQUE = 6  # critique="batch": the most runs one critique call reads
TEXTS_PER_DISTILL = 4  # the most critiques (or lesson lists) one distill call reads
TASK_SAMPLE = 5  # examples the task description is inferred from


def pick_for_critique(trajectories: Sequence[Trajectory], successes: int) -> list[Trajectory]:
    """All failures, and the first few successes so the optimizer also learns what works."""
    failures = [t for t in trajectories if not t.solved]
    wins = [t for t in trajectories if t.solved][:successes]
    return failures + wins


def describe_task(rt: Runtime, program: dspy.Module, candidate: Candidate, items: Sequence[tuple[Any, dspy.Example]],
                  budget: Budget) -> str:
    """The kind of task, in general terms, from at most ``TASK_SAMPLE`` examples (one call)."""
    sample = [example for _, example in items][:TASK_SAMPLE]
    room = max(300, budget.chars // (2 * max(1, len(sample))))
    shown = "\n\n".join(
        f"Input: {clip(_fields(ex.inputs().toDict()), room)}\nExpected: {clip(_fields(ex.labels().toDict()), 200)}"
        for ex in sample)
    steps = "; ".join(describe_predictor(program, k) for k in candidate if is_text_key(k))
    answer = rt.ask(DescribeTask, max_tokens=CRITIQUE_MAX_TOKENS, step=clip(steps, 600), examples=shown)
    return clip(answer.task_description.strip(), 800) if answer is not None else ""


def critique_each(rt: Runtime, candidate: Candidate, trajectories: Sequence[Trajectory], budget: Budget,
                  counters: Counters) -> list[str]:
    """One optimizer call per run (the paper's evaluator)."""
    shown = _shown_instructions(candidate, budget, counters)
    run_limit = min(budget.max_run_chars * 2, budget.chars - len(shown))

    def one(trajectory: Trajectory) -> str:
        answer = rt.ask(CritiqueRun, max_tokens=CRITIQUE_MAX_TOKENS, program_instructions=shown,
                        run=format_run(trajectory, run_limit, counters))
        return answer.critique.strip() if answer is not None else ""

    critiques = rt.map(one, trajectories)
    counters.add("critique_calls_failed", sum(1 for c in critiques if not c))
    return [c for c in critiques if c]


def critique_groups(rt: Runtime, candidate: Candidate, trajectories: Sequence[Trajectory], budget: Budget,
                    counters: Counters) -> list[str]:
    """One optimizer call per group of at most ``RUNS_PER_CRITIQUE`` runs, each fitted to the budget."""
    shown = _shown_instructions(candidate, budget, counters)
    groups = [list(trajectories[i:i + RUNS_PER_CRITIQUE]) for i in range(0, len(trajectories), RUNS_PER_CRITIQUE)]

    def one(group: list[Trajectory]) -> str:
        per_run = max(300, min(budget.max_run_chars, (budget.chars - len(shown)) // len(group) - 40))
        runs = "\n\n".join(f"### Run {i + 1}\n{format_run(t, per_run, counters)}" for i, t in enumerate(group))
        answer = rt.ask(CritiqueRuns, max_tokens=2 * CRITIQUE_MAX_TOKENS, program_instructions=shown, runs=runs)
        return answer.critique.strip() if answer is not None else ""

    critiques = rt.map(one, groups)
    counters.add("critique_calls_failed", sum(1 for c in critiques if not c))
    return [c for c in critiques if c]


def distill(rt: Runtime, texts: list[str], budget: Budget, counters: Counters) -> str:
    """Condense critiques into one lesson list, ``TEXTS_PER_DISTILL`` at a time, level by level.

    One text is already a lesson list (a group critique) or one critique: it is kept, clipped.
    """
    while len(texts) > 1:
        groups = [texts[i:i + TEXTS_PER_DISTILL] for i in range(0, len(texts), TEXTS_PER_DISTILL)]
        counters.add("critiques_distilled", len(texts))
        per_text = max(200, budget.chars // TEXTS_PER_DISTILL - 50)

        def one(group: list[str]) -> str:
            if len(group) == 1:
                return group[0]
            shown = "\n\n".join(f"- {clip(t, per_text)}" for t in group)
            answer = rt.ask(DistillLessons, max_tokens=2 * CRITIQUE_MAX_TOKENS, critiques=shown)
            if answer is None or not answer.lessons.strip():
                return clip(" ".join(group), LESSONS_MAX_CHARS)  # keep them, shortened, rather than lose them
            return answer.lessons.strip()

        texts = rt.map(one, groups)
    return clip(texts[0], LESSONS_MAX_CHARS) if texts else ""


def lessons_from_runs(rt: Runtime, candidate: Candidate, trajectories: Sequence[Trajectory], budget: Budget,
                      counters: Counters, successes: int, mode: str) -> tuple[str, int]:
    """Critique the chosen runs and distill the critiques: (lessons, runs critiqued)."""
    chosen = pick_for_critique(trajectories, successes)
    if not chosen:
        return "", 0
    critiques = (critique_each if mode == "each" else critique_groups)(rt, candidate, chosen, budget, counters)
    counters.add("runs_critiqued", len(chosen))
    return distill(rt, critiques, budget, counters), len(chosen)


def exemplar_runs(trajectories: Sequence[Trajectory], epoch: int, budget: Budget, counters: Counters,
                  count: int = 2) -> str:
    """At most ``count`` runs for the rewrite to look at, a failure first, rotated across epochs."""
    failures = [t for t in trajectories if not t.solved]
    wins = [t for t in trajectories if t.solved]
    picked = []
    for pool in (failures, wins):
        if pool and len(picked) < count:
            picked.append(pool[epoch % len(pool)])
    if failures and len(picked) < count and len(failures) > 1:
        picked.append(failures[(epoch + 1) % len(failures)])
    limit = min(budget.max_run_chars, budget.chars // 6)
    return "\n\n".join(format_run(t, limit, counters) for t in picked[:count]) or "(none)"


def _shown_instructions(candidate: Candidate, budget: Budget, counters: Counters) -> str:
    shown = instructions_text(candidate)
    if len(shown) > budget.chars // 2:
        counters.add("prompts_clipped")
        shown = clip(shown, budget.chars // 2)
    return shown


"""Algorithm 1 of the paper, selecting on evidence: explore, learn lessons, propose, keep the best.

Each partition's examples are split in two: the runs the optimizer learns from (``train``) and the
examples a change is judged on (``checks``: the valset's examples of the partition's kind, or a
held-out fold). One epoch critiques the current runs, distills the critiques into lessons, asks
for several proposals (distinct rollouts, so DSPy's cache does not hand back the same text), and
keeps the best-scoring one on the checks unless it is clearly worse than the current candidate
there (``significance.clearly_better``, a paired sign test) or scores below it.

A partition holds a few checks, too few to confirm a gain (on four, one more right is chance), so
they are not asked to: they only rank the proposals and stop a clearly harmful one. The evidence
that confirms a change is pooled further up: each merge node is validated on the union of its
children's checks, and the final check compares the result with the unchanged instructions on
the whole valset (``FGO._final_check``). A weak optimizer then costs calls, not accuracy.

Every partition whose current candidate still fails some of its runs (``min_failures``) writes
proposals; one that solves everything has nothing to learn and stops. An epoch that keeps nothing
leaves the runs as they were, so the next one reuses its lessons and only asks again (new
rollouts): a proposer right half the time gets another chance, at the price of the asks. A
proposal is never judged on the examples it was written from. Before the first epoch, successful
runs become demos, with labeled examples of failed runs filling the room, kept unless they clearly
lose on the checks. The runs the optimizer learns from are made without each example's own demo:
with it, a run copies its answer from the prompt, every run "succeeds", and the critiques have
nothing to find.

The paper's baselines (All-at-once, Batch-wise, Bootstrapping) use ``reflect_step``: the same
lessons and rewrite, without the acceptance test, as in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import dspy

from dspy_fgo.candidate import Candidate, describe_predictor, is_text_key
from dspy_fgo.optimize.demos import demo_count, demos_from_runs
from dspy_fgo.optimize.guards import clean_instruction, copies_examples
from dspy_fgo.optimize.lessons import describe_task, exemplar_runs, lessons_from_runs
from dspy_fgo.optimize.prompts import Budget, clip
from dspy_fgo.optimize.signatures import RewriteInstruction
from dspy_fgo.run.accounting import Counters
from dspy_fgo.run.runtime import Runtime, Trajectory, mean_score
from dspy_fgo.significance import Z, clearly_better

Items = Sequence[tuple[Any, dspy.Example]]


@dataclass
class EpochRecord:
    epoch: int
    score: float  # the kept candidate's score on the checks (held-out) after this epoch
    candidate: Candidate
    critiques: int = 0  # runs critiqued this epoch
    train_score: float | None = None  # the kept candidate's score on the runs learned from (see learning_runs);
    # None when no epoch learned from it (its runs were never needed)
    lessons: str = ""
    proposals: list[dict] = field(default_factory=list)  # {"kind", "score", "accepted", "reason", "text"}


@dataclass
class ReflectResult:
    candidate: Candidate  # the best candidate kept
    score: float  # its score on the checks
    baseline_score: float  # the starting candidate's score there
    history: list[EpochRecord] = field(default_factory=list)
    task_description: str = ""
    checks: list = field(default_factory=list)  # keys of the examples changes were judged on


def result_to_dict(result: ReflectResult) -> dict:
    return asdict(result)


def result_from_dict(data: dict) -> ReflectResult:
    history = [EpochRecord(**h) for h in data.get("history", [])]
    return ReflectResult(candidate=data["candidate"], score=data["score"], baseline_score=data["baseline_score"],
                         history=history, task_description=data.get("task_description", ""),
                         checks=data.get("checks", []))


def hold_out(items: Items) -> tuple[list, list]:
    """(train, checks) when no valset examples are given: every third example is held out; with
    fewer than 3 examples there is nothing to spare, and changes are judged on the examples themselves."""
    items = list(items)
    if len(items) < 3:
        return items, items
    return [x for i, x in enumerate(items) if i % 3 != 2], items[2::3]


@dataclass(frozen=True)
class Algorithm1:
    """Algorithm 1's settings: built once by the optimizer, the same object wherever a partition runs
    (here, or on an executor's worker)."""

    epochs: int
    budget: Budget
    critique_successes: int = 1
    critique_mode: str = "batch"
    max_demos: int = 0
    balance_demos: bool = True
    proposals: int = 3
    accept_z: float = Z
    min_failures: int = 1


def optimize_module(
    rt: Runtime,
    start: Candidate,
    items: Items,
    settings: Algorithm1,
    *,
    counters: Counters,
    checks: Items | None = None,
    resume: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> ReflectResult:
    """Algorithm 1 on ``items`` for ``rt.student``, changes judged on ``checks`` (default: a held-out
    fold of ``items``).

    After every epoch ``on_epoch`` gets the partition's state as plain JSON (to checkpoint);
    ``resume`` is such a state, and the run goes on after its last epoch as if never stopped.
    """
    train, checks = (list(items), list(checks)) if checks else hold_out(items)
    if checks is train or set(k for k, _ in checks) & set(k for k, _ in train):
        counters.add("partitions_judged_in_sample")
    run = _PartitionRun(rt, settings, train, checks, counters, on_epoch or (lambda state: None))
    if resume is not None:
        run.resume(resume)
    else:
        run.first_epoch(start)
    for epoch in range(run.history[-1].epoch + 1, settings.epochs + 1):
        if run.stopped or rt.exhausted():
            break  # nothing left to learn, or no budget left
        run.epoch(epoch)
    return ReflectResult(candidate=run.current, score=run.score, baseline_score=run.baseline, history=run.history,
                         task_description=run.task, checks=[k for k, _ in checks])


class _PartitionRun:
    """One partition's state through Algorithm 1's epochs: the kept candidate, its score on the
    checks, its runs on the training examples (made when an epoch needs them), and the history."""

    def __init__(self, rt: Runtime, settings: Algorithm1, train: list, checks: list, counters: Counters,
                 save: Callable[[dict], None]):
        self.rt, self.settings, self.train, self.checks = rt, settings, train, checks
        self.counters, self._save = counters, save
        self.examples = [example for _, example in train]
        self.task, self.stopped, self.history = "", False, []
        self.current, self.score, self.baseline, self.runs = {}, 0.0, 0.0, None

    def save(self) -> None:
        self._save(_state(self.history, self.task, self.baseline, self.stopped))

    def resume(self, state: dict) -> None:
        self.history = [EpochRecord(**h) for h in state["history"]]
        self.task, self.baseline, self.stopped = state["task_description"], state["baseline_score"], state["stopped"]
        self.current, self.score = self.history[-1].candidate, self.history[-1].score

    def first_epoch(self, start: Candidate) -> None:
        """Epoch 0: the start's runs and held-out score, and demos from its runs unless they clearly lose.

        The mirror of the rule for instructions: demos are the partition's own solved examples, and
        on a few checks one fewer right is chance, so they are refused only when the start is
        clearly better (the same sign test); ``accept_z=0`` refuses them on any loss."""
        rt, settings = self.rt, self.settings
        current = dict(start)
        runs = learning_runs(rt, current, self.train)
        start_runs = rt.evaluate(current, self.checks)
        old, score = [run.score for run in start_runs], mean_score(start_runs)
        self.baseline = score
        record = EpochRecord(epoch=0, score=score, candidate=current, train_score=mean_score(runs))
        demos = (demos_from_runs(current, runs, settings.max_demos, rt.student, balance=settings.balance_demos,
                                 counters=self.counters) if settings.max_demos and not rt.exhausted() else None)
        if demos:
            trial = {**current, **demos}
            tried = rt.evaluate(trial, self.checks)
            new, trial_score = [run.score for run in tried], mean_score(tried)
            accepted = not clearly_better(old, new, settings.accept_z)
            self.counters.add("demos_accepted" if accepted else "demos_rejected")
            record.proposals.append({"kind": "demos", "count": demo_count(trial), "score": trial_score,
                                     "accepted": accepted,
                                     "reason": _verdict(accepted, trial_score, score, "not clearly worse")})
            if accepted:  # its runs (without each example's own demo) wait until an epoch needs them
                current, score, runs = trial, trial_score, None
                record.candidate, record.score, record.train_score = current, score, None
        self.current, self.score, self.runs, self.history = current, score, runs, [record]
        self.save()
        rt.progress.note(epoch=f"0/{settings.epochs}", epoch_score=f"{score:.2f}")

    def epoch(self, epoch: int) -> None:
        """Learn from the kept candidate's runs, ask for proposals, keep the best unless it loses."""
        rt, settings, counters = self.rt, self.settings, self.counters
        check_runs = rt.evaluate(self.current, self.checks)  # already run: no call
        if self.runs is None:  # the kept candidate's runs, made only once an epoch will learn from them
            self.runs = learning_runs(rt, self.current, self.train)
            if self.history[-1].train_score is None:
                self.history[-1].train_score = mean_score(self.runs)
        if sum(not run.solved for run in [*self.runs, *check_runs]) < settings.min_failures:
            counters.add("partitions_without_failures")  # nothing left to learn from
            self.stopped = True
            self.save()
            return
        if not self.task:
            self.task = describe_task(rt, rt.student, self.current, self.train, settings.budget)
        if _kept_nothing(self.history[-1]):  # the same runs as last epoch, so the same lessons: new asks only
            lessons, critiqued = self.history[-1].lessons, 0
        else:
            lessons, critiqued = lessons_from_runs(rt, self.current, self.runs, settings.budget, counters,
                                                   settings.critique_successes, settings.critique_mode)
        evidence = Evidence(self.task, self.history, lessons,
                            exemplar_runs(self.runs, epoch, settings.budget, counters), self.examples)
        accepted, records = self._choose(epoch, evidence, [run.score for run in check_runs])
        self.history.append(EpochRecord(epoch=epoch, score=self.score, candidate=self.current, critiques=critiqued,
                                        train_score=mean_score(self.runs) if self.runs else None,
                                        lessons=lessons, proposals=records))
        rt.progress.note(epoch=f"{epoch}/{settings.epochs}", epoch_score=f"{self.score:.2f}")
        if not accepted:
            counters.add("epochs_without_change")  # the next epoch asks again: new rollouts, new texts
        self.save()

    def _choose(self, epoch: int, evidence: Evidence, old: list[float]) -> tuple[bool, list[dict]]:
        """Ask ``proposals`` rewrites and keep the best on the checks unless it scores below the
        current candidate or is clearly worse than it: the checks rank the proposals; they are too
        few to confirm a gain (the merge nodes and the final check pool the evidence)."""
        rt, proposals, counters = self.rt, self.settings.proposals, self.counters
        texts = rt.map(lambda i: propose(rt, self.current, evidence, self.settings.budget, counters,
                                         rollout=(epoch - 1) * proposals + i), range(proposals))
        fresh = [t for t in dict.fromkeys(map(_frozen, filter(None, texts))) if dict(t) != self.current]
        counters.add("proposals_made", len(fresh))
        runs_of = rt.map(lambda t: rt.item_scores(dict(t), self.checks), fresh)
        scores = [sum(r) / len(r) for r in runs_of]
        best = max(range(len(fresh)), key=lambda i: scores[i], default=None)  # the first of equals
        accepted = (best is not None and scores[best] >= self.score
                    and not clearly_better(old, runs_of[best], self.settings.accept_z))
        records = []
        for i, text in enumerate(fresh):
            won = accepted and i == best
            counters.add("proposals_accepted" if won else "proposals_rejected_out_of_sample")
            records.append({"kind": "instruction", "score": scores[i], "accepted": won,
                            "reason": _verdict(won, scores[i], self.score, "the best, not below the current"),
                            "text": clip(_instructions(dict(text)), 600)})
        if accepted:
            self.current, self.score, self.runs = dict(fresh[best]), scores[best], None
        return accepted, records


def learning_runs(rt: Runtime, candidate: Candidate, train: Items) -> list:
    """The candidate's runs on ``train``, each made without the example's own demo, so that the
    critiques see how the program does on an input whose answer it was not shown."""
    return rt.evaluate(candidate, train)  # each run without its own demo (``Runtime.evaluate``)


def _kept_nothing(record: EpochRecord) -> bool:
    """True when ``record`` is an epoch that asked for proposals and kept none."""
    return record.epoch > 0 and bool(record.lessons) and not any(
        p["accepted"] for p in record.proposals if p["kind"] == "instruction")


def _state(history: list[EpochRecord], task: str, baseline: float, stopped: bool) -> dict:
    return {"history": [asdict(h) for h in history], "task_description": task, "baseline_score": baseline,
            "stopped": stopped}


@dataclass(frozen=True)
class Evidence:
    """What a rewrite is shown: the task, the score history, the lessons and a few runs; and the
    examples whose particular text it must not copy."""

    task: str
    history: Sequence[EpochRecord]
    lessons: str
    shown_runs: str
    examples: Sequence[dspy.Example] = ()


def propose(rt: Runtime, candidate: Candidate, evidence: Evidence, budget: Budget, counters: Counters,
            rollout: int | None = None) -> Candidate | None:
    """One proposal for ``rt.student``: a new instruction per predictor (the old one kept where the
    answer is bad).

    None when no predictor got a usable instruction. A text that leaks the prompt or copies text
    particular to some of ``evidence.examples`` is refused (``dspy_fgo.optimize.guards``)."""

    def one(name: str) -> tuple[str, str]:
        step = describe_predictor(rt.student, name)
        answer = rt.ask(RewriteInstruction, rollout=rollout, step=step,
                        task_description=evidence.task or "(not described)",
                        current_instruction=clip(candidate[name], max(budget.max_instruction_chars, budget.chars // 3)),
                        score_history=score_history(evidence.history, name),
                        lessons=evidence.lessons or "(none)", example_runs=evidence.shown_runs)
        proposal = clean_instruction(answer.new_instruction if answer is not None else None, budget, step,
                                     current=candidate[name])
        if proposal is None:
            counters.add("proposals_rejected")
            return name, candidate[name]
        if copies_examples(proposal, candidate[name], evidence.examples):
            counters.add("proposals_copying_examples")
            return name, candidate[name]
        return name, proposal

    names = [k for k in candidate if is_text_key(k)]
    new = {**candidate, **dict(rt.map(one, names))}
    return new if any(new[k] != candidate[k] for k in names) else None


def score_history(history: Sequence[EpochRecord], name: str, last: int = 4) -> str:
    """What was tried for ``name`` and how it scored on held-out examples: the last few epochs."""
    lines = []
    for record in history[-last:]:
        lines.append(f"- epoch {record.epoch}, kept (held-out score {record.score:.2f}): "
                     f"{clip(record.candidate.get(name, ''), 300)}")
        lines += [f"- epoch {record.epoch}, rejected ({_held_out(p['score'])})"
                  for p in record.proposals if p["kind"] == "instruction" and not p["accepted"]]
    return "\n".join(lines[-2 * last:]) or "(none)"


def reflect_step(rt: Runtime, current: Candidate, trajectories: Sequence[Trajectory], history: list[EpochRecord],
                 budget: Budget, counters: Counters, critique_successes: int, critique_mode: str = "batch") -> Candidate:
    """One unconditional update of ``rt.student``'s candidate from the runs (the paper's baselines):
    lessons, then one rewrite. ``history[-1]`` is the record of ``current``; its critique count and
    lessons are filled in."""
    lessons, critiqued = lessons_from_runs(rt, current, trajectories, budget, counters, critique_successes,
                                           critique_mode)
    history[-1].critiques, history[-1].lessons = critiqued, lessons
    shown = exemplar_runs(trajectories, len(history), budget, counters)
    evidence = Evidence("", history, lessons, shown, [t.example for t in trajectories])
    return propose(rt, current, evidence, budget, counters) or current


def _frozen(candidate: Candidate) -> tuple:
    return tuple(sorted(candidate.items()))


def _instructions(candidate: Candidate) -> str:
    return "\n".join(f"[{k}] {v}" for k, v in candidate.items() if is_text_key(k))


def _held_out(score: float) -> str:
    return f"held-out score {score:.2f}"


def _verdict(accepted: bool, new: float, old: float, rule: str) -> str:
    return f"{'accepted' if accepted else 'rejected'}: held-out {new:.2f} vs {old:.2f} (needs {rule})"

"""The paper's baselines (Algorithms 1, 3 and 4; Appendix B.1.3), on FGO's own steps.

- ``AllAtOnce``: each epoch, explore the whole trainset and update once from all of it. The runs
  are critiqued in groups and the critiques distilled into lessons (``dspy_fgo.optimize.lessons``), so the
  prompt fits where the paper's version overflowed (its asterisk); the report counts the reduction.
- ``BatchWise``: each epoch, split the trainset into fixed batches and update after each batch.
- ``Bootstrapping``: for N iterations, sample a batch with replacement and update from it.

And ``knn_fewshot``, DSPy's nearest-labeled-demos baseline in FGO's offline space.

They share explore / lessons / rewrite with FGO (``dspy_fgo.optimize.reflect``), the final guard (never
return something worse than the unoptimized program on the valset or trainset) and the report.
"""

from __future__ import annotations

import random
from typing import Callable

import dspy

from dspy_fgo.base import ReflectiveOptimizer, Session
from dspy_fgo.settings import check_int
from dspy_fgo.candidate import Candidate, apply_candidate, read_candidate
from dspy_fgo.optimize.reflect import EpochRecord, reflect_step
from dspy_fgo.run.runtime import mean_score


class _SequentialReflection(ReflectiveOptimizer):
    """One candidate updated in sequence from a stream of batches (subclasses choose the batches)."""

    def batches(self, n: int, rng: random.Random) -> list[list[int]]:
        raise NotImplementedError

    def compile(self, student: dspy.Module, *, trainset: list, teacher=None, valset: list | None = None) -> dspy.Module:
        s = self._session(student, trainset, valset)
        start = read_candidate(student, tools=self.optimize_tools)
        current, steps = dict(start), []
        batches = self.batches(len(s.trainset), random.Random(self.seed))
        s.progress.stage(f"{self.method}: updating", total=len(batches), unit="batch")
        with s.stage("optimize"):
            for step, batch in enumerate(batches):
                if s.rt.exhausted():
                    break
                current = self._update(s, student, current, s.items(batch), steps, step)
                s.progress.advance(score=f"{steps[-1]['score']:.2f}")
        chosen, selection = self._select(s, [("final", current), ("unoptimized", start)])
        self.report_ = self._report(s, selection=selection, steps=steps, notes=self._notes(s))
        return apply_candidate(student, chosen)

    def _update(self, s: Session, student, current: Candidate, items, steps: list[dict], step: int) -> Candidate:
        trajectories = s.rt.evaluate(current, items)
        history = [EpochRecord(epoch=step, score=mean_score(trajectories), candidate=current)]
        new = reflect_step(s.rt, current, trajectories, history, s.budget, s.counters,
                           self.critique_successes, self.critique)
        steps.append({"step": step, "batch": [k for k, _ in items], "score": history[0].score,
                      "critiques": history[0].critiques, "changed": new != current})
        return new

    def _notes(self, s: Session) -> list[str]:
        events = s.counters.to_dict()
        if events.get("critiques_distilled"):
            return [f"{events.get('runs_critiqued', 0)} runs were critiqued in groups and "
                    f"{events['critiques_distilled']} critiques distilled into lessons, so every optimizer prompt "
                    f"fit {s.budget.max_prompt_tokens} tokens (where the paper's version overflows its context)"]
        return []


class AllAtOnce(_SequentialReflection):
    """Algorithm 1 on the whole trainset: one update per epoch from every run."""

    method = "AllAtOnce"

    def batches(self, n, rng):
        return [list(range(n)) for _ in range(self.epochs)]


class BatchWise(_SequentialReflection):
    """Algorithm 3: each epoch, fixed consecutive batches of ``batch_size``, updated in sequence."""

    method = "BatchWise"

    def __init__(self, metric: Callable, *, batch_size: int = 8, **settings):
        super().__init__(metric, **settings)
        check_int("batch_size", batch_size, 1)
        self.batch_size = batch_size

    def batches(self, n, rng):
        fixed = [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]
        return [batch for _ in range(self.epochs) for batch in fixed]


class Bootstrapping(_SequentialReflection):
    """Algorithm 4: ``iterations`` batches of ``batch_size`` sampled with replacement (seeded)."""

    method = "Bootstrapping"

    def __init__(self, metric: Callable, *, batch_size: int = 8, iterations: int | None = None, **settings):
        super().__init__(metric, **settings)
        check_int("batch_size", batch_size, 1)
        check_int("iterations", iterations, 1, optional=True)
        self.batch_size = batch_size
        self.iterations = iterations

    def batches(self, n, rng):
        # Default: as many updates as Batch-wise makes, so the two spend comparable budgets.
        iterations = self.iterations or self.epochs * -(-n // self.batch_size)
        return [sorted(rng.choices(range(n), k=self.batch_size)) for _ in range(iterations)]


def knn_fewshot(program: dspy.Module, trainset: list, k: int = 4) -> dspy.Module:
    """DSPy's ``KNNFewShot``, the nearest-demo baseline: each input runs with its ``k`` nearest
    labeled training examples (no compile call), in the offline space FGO routes in. Bootstrapping
    is off: on, it runs the program on each input's neighbours under a fresh demo set."""
    from dspy_fgo.divide import input_text
    from dspy_fgo.divide.space import Space

    space = Space.fit([input_text(ex) for ex in trainset])
    # caching=False: DSPy caches a callable embedder's vectors by input alone, across spaces.
    vectorizer = dspy.Embedder(space, caching=False)
    return dspy.KNNFewShot(k=k, trainset=trainset, vectorizer=vectorizer, max_bootstrapped_demos=0,
                           max_labeled_demos=k).compile(program)

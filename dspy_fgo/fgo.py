"""FGO, the teleprompter: divide the trainset, optimize each partition, merge progressively."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from dspy_fgo.accounting import Counters, Meters
from dspy_fgo.candidate import apply_candidate, read_candidate
from dspy_fgo.divide import Partitioner, pool_small, resolve_partitioner
from dspy_fgo.embed import Embedding
from dspy_fgo.merge import MergeNode, ProgressiveMerge
from dspy_fgo.reflect import budget_for, optimize_module
from dspy_fgo.report import PartitionReport, Report
from dspy_fgo.runtime import Runtime

logger = logging.getLogger("dspy_fgo")

CLUSTERINGS = ("kmeans", "spectral", "bisecting", "none")


class FGO(Teleprompter):
    """Fine-Grained Generative Optimization (Liu et al.): divide, optimize, merge.

    Args:
        metric: ``metric(example, prediction, trace=None)`` returning a bool or a float in [0, 1]
            (or ``dspy.Prediction(score=..., feedback=...)``; the feedback is shown to the optimizer).
        partition_by: ``None`` (cluster the inputs' text), ``"random"``, a field name, a callable
            ``example -> key``, or a ``dspy_fgo.Partitioner``.
        n_partitions: partitions for ``None``/``"random"`` (default about sqrt(len(trainset)), 2 to 8).
        min_partition_size: smaller partitions are pooled together, not optimized alone.
        epochs: rewrites per partition (Algorithm 1); each is followed by an evaluation, so 3 epochs
            explore each partition 4 times, as the paper's 4 epochs do.
        merge_threshold: t, the most candidates one LLM merge call sees (Algorithm 2).
        clustering: ``"kmeans"`` (the paper's), ``"spectral"``, ``"bisecting"``, or ``"none"`` (merge
            all at once, the paper's ablation: one call sees every candidate).
        prompt_model: the optimizer LM (critique, rewrite, merge); default the task model.
        task_model: the LM the program runs on; default ``dspy.settings.lm``.
        embedder: ``dspy.Embedder`` or any ``texts -> vectors`` callable; default offline TF-IDF/SVD.
        num_threads: the most LM calls in flight at once, across all partitions.
        seed: seeds partitioning and clustering.
        max_errors: metric exceptions tolerated before the compile stops (default DSPy's).
        max_prompt_tokens: optimizer prompt budget (default the prompt model's context window).
        critique_successes: successful runs critiqued per epoch besides every failure.
    """

    def __init__(
        self,
        metric: Callable,
        *,
        partition_by: str | Callable | Partitioner | None = None,
        n_partitions: int | None = None,
        min_partition_size: int = 2,
        epochs: int = 3,
        merge_threshold: int = 3,
        clustering: str = "kmeans",
        prompt_model: dspy.BaseLM | None = None,
        task_model: dspy.BaseLM | None = None,
        embedder: Callable | None = None,
        num_threads: int = 4,
        seed: int = 0,
        max_errors: int | None = None,
        max_prompt_tokens: int | None = None,
        critique_successes: int = 1,
    ):
        super().__init__()
        if not callable(metric):
            raise TypeError(f"metric must be callable as metric(example, prediction, trace=None); got {metric!r}")
        _check_int("n_partitions", n_partitions, 1, optional=True)
        _check_int("min_partition_size", min_partition_size, 1)
        _check_int("epochs", epochs, 0)
        _check_int("merge_threshold", merge_threshold, 2)
        _check_int("num_threads", num_threads, 1)
        _check_int("seed", seed, 0)
        _check_int("max_errors", max_errors, 0, optional=True)
        _check_int("max_prompt_tokens", max_prompt_tokens, 1000, optional=True)
        _check_int("critique_successes", critique_successes, 0)
        if clustering not in CLUSTERINGS:
            raise ValueError(f"clustering must be one of {CLUSTERINGS}; got {clustering!r}")
        for name, lm in (("prompt_model", prompt_model), ("task_model", task_model)):
            if lm is not None and not isinstance(lm, dspy.BaseLM):
                raise TypeError(f"{name} must be a dspy.LM (or dspy.BaseLM); got {type(lm).__name__}")
        if embedder is not None and not callable(embedder):
            raise TypeError("embedder must be a dspy.Embedder or a callable from texts to vectors")
        self.partitioner = resolve_partitioner(partition_by)
        self.metric = metric
        self.partition_by = partition_by
        self.n_partitions = n_partitions
        self.min_partition_size = min_partition_size
        self.epochs = epochs
        self.merge_threshold = merge_threshold
        self.clustering = clustering
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.embedder = embedder
        self.num_threads = num_threads
        self.seed = seed
        self.max_errors = max_errors
        self.max_prompt_tokens = max_prompt_tokens
        self.critique_successes = critique_successes
        self.report_: Report | None = None

    def compile(self, student: dspy.Module, *, trainset: list, teacher=None, valset: list | None = None) -> dspy.Module:
        """Return an optimized deep copy of ``student``; what happened is in ``self.report_``."""
        task_lm = self._check_inputs(student, trainset, valset)
        prompt_lm = self.prompt_model or task_lm
        meters, counters, timings = Meters(), Counters(), {}
        rt = Runtime(student=student, metric=self.metric, task_lm=task_lm, prompt_lm=prompt_lm,
                     meters=meters, num_threads=self.num_threads, max_errors=self.max_errors)
        budget = budget_for(prompt_lm, self.max_prompt_tokens)
        embed = Embedding(self.embedder, meters["embedder"], counters, seed=self.seed)

        def items_of(indices):
            return [(i, trainset[i]) for i in indices]

        with _timed(timings, "divide"):
            groups = self.partitioner.split(trainset, n_partitions=self.n_partitions, seed=self.seed, embed=embed)
            partitions, notes = pool_small(groups, self.min_partition_size)
        logger.info("FGO: %d examples in %d partitions", len(trainset), len(partitions))

        start = read_candidate(student)
        with _timed(timings, "optimize"):
            results = rt.map(
                lambda p: optimize_module(rt, student, start, items_of(p.indices), epochs=self.epochs,
                                          budget=budget, counters=counters,
                                          critique_successes=self.critique_successes),
                partitions,
            )

        merger = ProgressiveMerge(rt, student, items_of, embed, threshold=self.merge_threshold,
                                  clustering=self.clustering, budget=budget, counters=counters, seed=self.seed)
        with _timed(timings, "merge"):
            leaves = [merger.leaf(r.candidate, p.indices, r.score, p.name) for p, r in zip(partitions, results)]
            root = merger.run(leaves)

        with _timed(timings, "select"):
            chosen, selection = self._select(rt, root, merger.tree.nodes, start, items_of(range(len(trainset))), valset)

        counters.add("program_errors", rt.program_errors)
        counters.add("metric_errors", rt.metric_errors)
        self.report_ = Report(
            method="FGO",
            settings=self._settings(budget.max_prompt_tokens),
            partitions=[
                PartitionReport(name=p.name, size=len(p.indices), score_before=r.baseline_score,
                                score_after=r.score, candidate=r.candidate,
                                epochs=[{"epoch": h.epoch, "score": h.score, "critiques": h.critiques} for h in r.history])
                for p, r in zip(partitions, results)
            ],
            tree=[node.to_dict() for node in merger.tree.nodes],
            selection=selection,
            usage=meters.to_dict(),
            timings=timings,
            events=counters.to_dict(),
            notes=notes,
        )
        logger.info("FGO done:\n%s", self.report_.summary())
        return apply_candidate(student, chosen)

    def _select(self, rt: Runtime, root: MergeNode, nodes: list[MergeNode], start: dict, train_items, valset):
        """Return the root unless one it was built from (or the unoptimized program) does better.

        Candidates are compared on the valset when given, else on the root's examples (the whole
        trainset). Ties go to the earlier entry: root, then its children, then the original.
        """
        entries = [("root", root.candidate)]
        entries += [(f"node {child}", nodes[child].candidate) for child in root.children]
        entries.append(("unoptimized", start))
        on = "valset" if valset else "trainset"
        items = [(("val", i), ex) for i, ex in enumerate(valset)] if valset else train_items
        scores = {label: rt.score(candidate, items) for label, candidate in entries}
        best = max(scores, key=scores.get)  # first max wins
        if best == "root":
            reason = f"the merged root scored best on the {on}"
        else:
            reason = f"{best} scored {scores[best]:.3f} on the {on}, above the merged root's {scores['root']:.3f}"
        return dict(entries)[best], {"returned": best, "root_id": root.id, "on": on, "scores": scores, "reason": reason}

    def _check_inputs(self, student, trainset, valset) -> dspy.BaseLM:
        """Every input problem we can see, raised before the first LM call."""
        if not isinstance(student, dspy.Module):
            raise TypeError(f"student must be a dspy.Module; got {type(student).__name__}")
        if not student.named_predictors():
            raise ValueError("student has no predictors (dspy.Predict, ChainOfThought, ...): nothing to optimize")
        for name, data in (("trainset", trainset), ("valset", valset)):
            if data is None and name == "valset":
                continue
            if not isinstance(data, (list, tuple)) or not data:
                raise ValueError(f"{name} must be a non-empty list of dspy.Example")
            for i, example in enumerate(data):
                if not isinstance(example, dspy.Example):
                    raise TypeError(f"{name}[{i}] is a {type(example).__name__}, not a dspy.Example")
                if not example._input_keys:
                    raise ValueError(f"{name}[{i}] has no input fields: build it with dspy.Example(...).with_inputs(...)")
        if self.n_partitions is not None and self.n_partitions > len(trainset):
            raise ValueError(f"n_partitions={self.n_partitions} is larger than the trainset ({len(trainset)} examples)")
        self.partitioner.check(trainset)
        task_lm = self.task_model or dspy.settings.lm
        if task_lm is None:
            raise ValueError("no LM configured: pass FGO(task_model=dspy.LM(...)) or call dspy.configure(lm=...)")
        return task_lm

    def _settings(self, max_prompt_tokens: int) -> dict[str, Any]:
        def name(value):
            if value is None or isinstance(value, (str, int, float)):
                return value
            return getattr(value, "model", None) or getattr(value, "__name__", None) or type(value).__name__

        return {
            "partition_by": name(self.partition_by), "n_partitions": self.n_partitions,
            "min_partition_size": self.min_partition_size, "epochs": self.epochs,
            "merge_threshold": self.merge_threshold, "clustering": self.clustering,
            "prompt_model": name(self.prompt_model), "task_model": name(self.task_model or dspy.settings.lm),
            "embedder": name(self.embedder) or "offline-tfidf-svd", "num_threads": self.num_threads,
            "seed": self.seed, "max_prompt_tokens": max_prompt_tokens, "metric": name(self.metric),
        }


def _check_int(name: str, value, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 3)

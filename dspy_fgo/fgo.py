"""FGO, the teleprompter: divide the trainset, optimize each partition, merge progressively."""

from __future__ import annotations

import logging
from typing import Callable

import dspy

from dspy_fgo.base import UNCHANGED, ReflectiveOptimizer
from dspy_fgo.candidate import apply_candidate, is_text_key, prompt_size, read_candidate
from dspy_fgo.divide.embed import Embedding
from dspy_fgo.divide.partition import assign_checks, pool_small, resolve_partitioner
from dspy_fgo.merge.progressive import MergeSettings, ProgressiveMerge
from dspy_fgo.optimize.inner import optimize_with_inner
from dspy_fgo.optimize.reflect import Algorithm1, optimize_module, result_from_dict, result_to_dict
from dspy_fgo.report.report import PartitionReport
from dspy_fgo.route.choose import demo_route_of, merged_or_routed, route_specialists
from dspy_fgo.run.accounting import Counters
from dspy_fgo.run.checkpoint import Checkpoint
from dspy_fgo.run.fingerprint import fingerprint
from dspy_fgo.optimize.remote import make_job, run_partition_job
from dspy_fgo.run.runtime import PRIORITY
from dspy_fgo.settings import FGOSettings

logger = logging.getLogger("dspy_fgo")



class FGO(ReflectiveOptimizer):
    """Fine-Grained Generative Optimization (Liu et al.): divide, optimize, merge.

    Args:
        auto: a preset, ``"light"``, ``"medium"`` (the defaults) or ``"heavy"``, setting ``epochs``,
            ``proposals`` and ``min_failures`` together (``dspy_fgo.settings.PRESETS``); settings
            given explicitly override it.
        metric: ``metric(example, prediction, trace=None)`` returning a bool or a float in [0, 1]
            (or ``dspy.Prediction(score=..., feedback=...)``; the feedback is shown to the optimizer).
        success_threshold: a run scoring at least this is solved: it may become a demo, and the
            optimizer learns from the runs below it; default 0.5 (for a 0/1 metric any value in
            (0, 1] is the same; with F1, ROUGE or a judge's score, set what counts as right).
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
        critique: ``"batch"`` (one call per group of at most 6 runs) or ``"each"`` (the paper's
            evaluator: one call per run); either way the critiques are distilled into short lessons.
        max_demos: demos per predictor a partition may take from its own successful runs (kept
            unless clearly worse on its held-out examples, by ``accept_z``'s sign test); 0 turns
            demos off.
        balance_demos: give each distinct gold answer the same number of a partition's demos (as
            many as its rarest answer has), where answers repeat: demos that mostly share one answer
            pull the model towards it (``dspy_fgo.optimize.demos``). ``False``: the shortest, whatever they say.
        proposals: instructions proposed per epoch (distinct rollouts), and merged texts asked per
            merge node; the best-scoring on the held-out examples is kept unless it scores below the
            current one or is clearly worse (``accept_z``). A partition's few checks only rank the
            proposals: the merge nodes (the union of their children's checks) and the final check
            (the whole valset, a paired sign test against the unchanged instructions) confirm a gain.
        min_failures: a partition writes proposals while its current candidate fails at least this
            many of its runs (learning runs and held-out checks); default 1: wherever there is
            something to learn. Raise it to spend no optimizer calls on nearly solved partitions
            (``partitions_without_failures`` counts those that stopped so).
        accept_z: how many standard deviations (paired sign test) worse on a partition's held-out
            examples its demos or best proposal must be to be refused; default 1.645 (one-sided 95 %,
            the final check's). ``0`` refuses any loss.
        checkpoint_dir: write each partition's state after every epoch, and each finished partition
            and merge node, there (atomic JSON); rerunning the same compile resumes without redoing
            them: at most the epoch in flight of each partition in flight. Other data or settings
            are refused.
        max_lm_calls, max_tokens, max_cost: a soft budget over all roles (``max_cost`` in US dollars,
            by LiteLLM's prices; refused up front for a model LiteLLM cannot price); when reached,
            FGO starts no new work and returns the best program found so far (the report says so).
        executor: a ``concurrent.futures.Executor`` (process pool, ``dask.distributed.Client``) to run
            partitions on; the program, metric and LMs travel by cloudpickle.
        progress: progress bars (``None``: in a terminal or notebook, not in CI; see ``dspy_fgo.run.progress``).
        optimize_tools: also critique, rewrite and merge the descriptions of a ``dspy.ReAct`` agent's
            tools and their arguments (off by default, as in GEPA: tool docs are often the user's
            API documentation); the student's tools are never modified, and no code is generated.
        inner: optional factory ``seed -> teleprompter`` (MIPROv2, GEPA, COPRO, ...) that optimizes
            each partition instead of Algorithm 1; its instructions and demos are merged.
        route: ``"auto"`` (default): the merges decide the instructions, scored with each check's
            own partition's demos; the routed program (below) is returned only where it clearly beats
            one merged program (the same instructions with every partition's kept demos interleaved,
            up to ``max_demos``) on the valset, by the final check's paired test; else the merged
            one. The report's ``selection["route"]`` says which and why. ``"demos"``: always the
            routed program, a ``dspy_fgo.Routed`` whose experts share the merged instruction and
            each input runs with the demos its nearest partition kept (``dspy_fgo.route.DemoRoute``).
            ``True``: the same, and a partition also keeps its own optimized instruction (its
            specialist) where that gets at least ``route.ROUTE_MARGIN`` more of its held-out
            examples right than the merged one. ``False``: the paper's one merged program, each
            merge pooling its children's demos.
        nearest_demos: with routed demos (``route="auto"``, ``"demos"`` or ``True``), a partition
            that keeps demos keeps a pool of them (from its training and held-out runs, up to
            ``nearest.POOL_PER_DEMO`` times ``max_demos``), and each input runs with the
            ``max_demos`` of its partition's pool most similar to it, never its own
            (``dspy_fgo.route.nearest``); a routed specialist keeps its partition's pool. ``None``
            (default): on with routed demos and ``max_demos > 0``; ``False`` keeps each
            partition's fixed demos.
    """

    method = "FGO"

    settings_type = FGOSettings

    def __init__(self, metric: Callable, *, auto: str | None = None, **settings):
        super().__init__(metric, auto=auto, **settings)
        self.partitioner = resolve_partitioner(self.partition_by)

    def _check_inputs(self, student, trainset, valset) -> dspy.BaseLM:
        task_lm = super()._check_inputs(student, trainset, valset)
        if self.n_partitions is not None and self.n_partitions > len(trainset):
            raise ValueError(f"n_partitions={self.n_partitions} is larger than the trainset ({len(trainset)} examples)")
        self.partitioner.check(trainset)
        return task_lm

    def compile(self, student: dspy.Module, *, trainset: list, teacher=None, valset: list | None = None) -> dspy.Module:
        """Return an optimized deep copy of ``student``; what happened is in ``self.report_``."""
        s = self._session(student, trainset, valset)
        start = read_candidate(student, tools=self.optimize_tools)
        checkpoint = self._checkpoint(s, start)
        embed = Embedding(self.embedder, s.meters["embedder"], s.counters, seed=self.seed)

        with s.stage("divide"):
            partitions, check_ids, notes = self._divide(s, start, embed)
        logger.info("FGO: %d examples in %d partitions", len(trainset), len(partitions))

        s.progress.stage("FGO: optimizing partitions", total=len(partitions), unit="partition")
        with s.stage("optimize"):
            results = s.rt.map(lambda ip: self._optimize_partition(s, start, checkpoint, *ip),
                               list(enumerate(zip(partitions, check_ids))))
        if self.inner is not None:
            notes.append(f"partitions optimized by {results[0][1]} (inner); its calls are under usage['inner']")
        results = [r for r, _ in results]
        # Demos are examples of one kind of input: routed to it, under route=True too (dspy_fgo.route).
        demo_route = None
        if self.settings.routes_demos:
            with s.stage("demos"):  # pools reuse the partitions' runs: LM calls only for partitions reused from disk
                demo_route = demo_route_of(s, self.settings, start, partitions, results)

        if demo_route is not None:
            notes.append(f"demos: routed per input (route={self.route!r}); merges decide instructions only, each "
                         "check scored with the demos of the partition it routes to")
        elif any(not is_text_key(k) for r in results for k in r.candidate):
            notes.append("demos: each merge interleaves its children's demos (best-scoring child first), "
                         "capped at max_demos (with inner=, at the largest child's count), "
                         "then validates on the union of their held-out examples")
        merger = ProgressiveMerge(s.rt, s.items_of, embed, self._merge_settings(), budget=s.budget,
                                  counters=s.counters, saved=checkpoint, routed=demo_route)
        s.progress.stage("FGO: merging", unit="merge")
        merger.on_node = lambda node: s.progress.advance(level=node.level, merged=f"{len(node.children)}->1",
                                                         score=f"{node.score:.2f}")
        with s.stage("merge"):
            leaves = [merger.leaf(r.candidate, p.indices, r.score, p.name, checks=r.checks)
                      for p, r in zip(partitions, results)]
            root = merger.run(leaves)

        nodes = merger.tree.nodes
        chosen, program, selection = self._final_check(s, student, start, root, nodes, demo_route)
        selection["root_id"] = root.id
        if self.route is True:
            with s.stage("route"):
                program = route_specialists(s, self.settings, student, nodes, chosen, program, selection, demo_route)

        self.report_ = self._report(
            s,
            partitions=[_partition_report(p, r) for p, r in zip(partitions, results)],
            tree=[node.to_dict() for node in nodes],
            selection=selection,
            notes=notes + ([f"checkpoint {self.checkpoint_dir}: reused {checkpoint.reused} finished units"]
                           if checkpoint and checkpoint.reused else []),
        )
        return program

    def _final_check(self, s, student, start, root, nodes, demo_route):
        """The root against what it was built from and against the user's own instructions with the
        root's demos: the shortest prompt (every call pays for it) that the best does not clearly beat
        is returned; the original program only when it scores strictly best. Here, on the whole
        valset, a paired test can confirm what the partitions' few checks could only rank."""
        entries = [("root", root.candidate)] + [(f"node {c}", nodes[c].candidate) for c in root.children]
        # The reference a change must clearly beat: the user's instructions, with the root's demos.
        entries.append((UNCHANGED, {**root.candidate, **{k: v for k, v in start.items() if is_text_key(k)}}))
        if not s.rt.exhausted():  # out of budget there is no comparison: the root is returned
            entries.sort(key=lambda entry: prompt_size(entry[1]))
        entries.append(("unoptimized", start))
        if demo_route is None:
            chosen, selection = self._select(s, entries, reference=UNCHANGED)
            return chosen, apply_candidate(student, chosen), selection
        # The optimized entries run with routed demos; the unoptimized program as it is.
        chosen, selection = self._select(s, entries, reference=UNCHANGED, score=lambda label, c, items: (
            s.rt.item_scores(c, items) if label == "unoptimized" else demo_route.item_scores(c, items)))
        if selection["returned"] == "unoptimized":
            return chosen, apply_candidate(student, chosen), selection
        with_demos = sum(1 for demos in demo_route.demos[:-1] if demos)
        selection["route"] = (f"demos: each input runs with its nearest partition's demos "
                              f"({with_demos} of {len(demo_route.demos) - 1} partitions kept some)")
        if self.route == "auto":
            return merged_or_routed(s, self.settings, student, chosen, selection, demo_route)
        return chosen, demo_route.program(student, chosen), selection

    def _divide(self, s, start, embed):
        """The partitions, each with the valset examples its changes are judged on (None: a held-out
        fold of its own), and notes on pooled partitions."""
        # A difficulty split runs the program once first; Algorithm 1 reuses those runs from the cache.
        rollout = ({"rollout": lambda: s.rt.evaluate(start, s.items())}
                   if getattr(self.partitioner, "needs_rollout", False) else {})
        groups = self.partitioner.split(s.trainset, n_partitions=self.n_partitions, seed=self.seed, embed=embed,
                                        **rollout)
        partitions, notes = pool_small(groups, self.min_partition_size)
        check_ids = (assign_checks(self.partitioner, partitions, s.trainset, s.valset, self.embedder) if s.valset
                     else [None] * len(partitions))
        return partitions, check_ids, notes

    def _optimize_partition(self, s, start, checkpoint, index: int, work):
        """Algorithm 1 on one partition, or the user's inner teleprompter; checkpointed."""
        partition, check_ids = work
        PRIORITY.set(index)  # earlier partitions get LM slots first, so they finish (and are saved) in order
        key = f"{index:04d}"
        saved = checkpoint.load("partition", key) if checkpoint else None
        if saved is not None:
            s.progress.advance(partition=f"{partition.name} (checkpoint)")
            s.counters.absorb(saved.get("events", {}))  # a resumed run reports what its reused partitions did
            return result_from_dict(saved["result"]), saved["optimizer"]
        # This partition's own events, saved with its state, so a resumed run still counts them.
        events = Counters()
        # A partition killed mid-way goes on after its last finished epoch.
        resume = checkpoint.load("epoch", key, finished=False) if checkpoint and self.executor is None else None
        if resume is not None:
            s.counters.add("partitions_resumed_mid_way")
            events.absorb(resume.get("events", {}))
        on_epoch = ((lambda state: checkpoint.save("epoch", key, {**state, "events": events.to_dict()}))
                    if checkpoint else None)
        items = s.items(partition.indices)
        check_items = s.val_items(check_ids) if check_ids else None
        if self.executor is not None:
            result, by = self._optimize_remote(s, start, index, items, check_items, events)
        elif self.inner is not None:
            result, by = optimize_with_inner(s.rt, self.inner, self.seed + index, s.student, start, items, check_items)
        else:
            result, by = optimize_module(s.rt, start, items, self._algorithm1(s), checks=check_items,
                                         counters=events, resume=resume, on_epoch=on_epoch), "FGO"
        s.counters.absorb(events.to_dict())
        calls = sum(m.usage.calls for m in s.meters.by_role.values())
        logger.info("partition %r (%d examples) optimized by %s: %.2f -> %.2f [%d LM calls so far]",
                    partition.name, len(partition.indices), by, result.baseline_score, result.score, calls)
        s.progress.advance(partition=partition.name, score=f"{result.baseline_score:.2f}->{result.score:.2f}")
        if checkpoint and not s.rt.exhausted():  # a partition cut short by the budget is not finished
            checkpoint.save("partition", key, {"name": partition.name, "optimizer": by,
                                               "result": result_to_dict(result), "events": events.to_dict()})
        return result, by

    def _optimize_remote(self, s, start, index: int, items, check_items, events):
        """The same work as locally, on the executor; its usage joins this run's, its events ``events``."""
        job = make_job(runtime=s.rt.spec(), inner=self.inner, seed=self.seed + index, start=start, items=items,
                       checks=check_items, algorithm1=self._algorithm1(s))
        outcome = self.executor.submit(run_partition_job, job).result()
        for role, by_model in outcome["usage"].items():
            s.meters[role].absorb(by_model)
        events.absorb(outcome["events"])
        return result_from_dict(outcome["result"]), outcome["optimizer"]

    def _algorithm1(self, s) -> Algorithm1:
        """Algorithm 1's settings, the same wherever a partition runs."""
        return Algorithm1(epochs=self.epochs, budget=s.budget, critique_successes=self.critique_successes,
                          critique_mode=self.critique, max_demos=self.max_demos, proposals=self.proposals,
                          balance_demos=self.balance_demos, accept_z=self.accept_z, min_failures=self.min_failures)

    def _merge_settings(self) -> MergeSettings:
        """Algorithm 2's settings; with ``inner=`` each merge keeps its largest child's demos."""
        return MergeSettings(threshold=self.merge_threshold, clustering=self.clustering, seed=self.seed,
                             asks=self.proposals, max_demos=self.settings.merged_demos,
                             accept_z=self.accept_z)

    def _checkpoint(self, s, start) -> Checkpoint | None:
        if self.checkpoint_dir is None:
            return None
        # Settings that cannot change a finished unit stay out; optimize_tools shows in ``start``.
        settings = {k: v for k, v in self._settings(s).items()
                    if k not in ("num_threads", "checkpoint_dir", "executor", "max_lm_calls", "max_tokens",
                                 "max_cost", "optimize_tools", "progress", "route", "nearest_demos")}
        # route and nearest_demos are decided after the partitions: their finished partitions serve
        # either way, and each merge node's key names how it was scored (``DemoRoute.kind``).
        signatures = {name: str(p.signature) for name, p in s.student.named_predictors()}
        run = fingerprint(self.method, settings, signatures, start, s.trainset, s.valset)
        return Checkpoint(self.checkpoint_dir, run, {"method": self.method, "settings": settings,
                                                     "trainset_size": len(s.trainset)})


def _partition_report(partition, result) -> PartitionReport:
    return PartitionReport(name=partition.name, size=len(partition.indices), score_before=result.baseline_score,
                           score_after=result.score, candidate=result.candidate,
                           epochs=[{"epoch": h.epoch, "score": h.score, "train_score": h.train_score,
                                    "critiques": h.critiques, "lessons": h.lessons, "proposals": h.proposals}
                                   for h in result.history],
                           task_description=result.task_description, checks=len(result.checks))

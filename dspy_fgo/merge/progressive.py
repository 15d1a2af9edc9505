"""Merge: the paper's Algorithm 2, progressive module merging.

Optimized candidates are embedded; a group of at most ``t`` is merged by LLM calls (one per
predictor, asked ``asks`` times as distinct rollouts) that see each candidate's text and its score;
a larger group is clustered into floor(sqrt(n)) clusters, each merged recursively, and the cluster
results are merged the same way. No LLM merge call ever sees more than ``t`` candidates (except
``clustering="none"``, the paper's ablation that merges everything at once). Every merged node is
validated on the union of its children's checks (the held-out examples their partitions were
judged on): the best-scoring merge is kept unless it is clearly worse there (a paired sign test)
than the best child or than a candidate that costs no call, the best child's texts with every
child's demos pooled (up to ``max_demos``). Without such a merge, the node keeps the better of
those two. The final check then weighs the root against the unchanged instructions on the whole
valset, so a weak optimizer's merges cost calls, never the returned program's accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import dspy

from dspy_fgo.candidate import Candidate, candidate_text, describe_predictor, is_text_key
from dspy_fgo.divide.partition import clusters_of
from dspy_fgo.optimize.guards import clean_instruction
from dspy_fgo.optimize.prompts import Budget, clip
from dspy_fgo.optimize.signatures import MergeInstructions
from dspy_fgo.run.accounting import Counters
from dspy_fgo.run.fingerprint import fingerprint
from dspy_fgo.run.runtime import Runtime, mean
from dspy_fgo.significance import Z, clearly_better

logger = logging.getLogger("dspy_fgo")

MERGE_ROOM = 1.1  # a merged text may be at most this times its children's texts together
MERGE_ROUNDS = 2  # rounds of ``asks`` merge calls at a node, the second only when the first yields no merge kept



@dataclass
class MergeNode:
    id: int
    candidate: Candidate
    examples: list[int]  # trainset positions covered by this node
    score: float  # validation score on ``checks``
    children: list[int] = field(default_factory=list)
    level: int = 0  # 0 for leaves (optimized partitions)
    # "leaf"; "llm_merge" (the LLM's merged texts); "pooled_demos" (the best child's texts, with every
    # child's demos: no call); "identical" (children's texts agreed: no call); "best_child" (both lost
    # to it); "budget_exhausted"
    made_by: str = "leaf"
    merge_calls: int = 0
    partition: str | None = None  # leaves only
    checks: list = field(default_factory=list)  # keys of the held-out examples the node is judged on
    child_scores: list = field(default_factory=list)  # each child's score on ``checks``, as ``children``
    attempts: list = field(default_factory=list)  # each candidate's score on ``checks``, as ``attempted``
    attempted: list = field(default_factory=list)  # the candidates tried: "identical", "pooled_demos", "llm_merge"
    route: dict | None = None  # leaves, with FGO(route=True): does the partition keep its specialist, and why

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class MergeTree:
    """The nodes of one progressive merge; ``root`` is the last node made."""

    def __init__(self):
        self.nodes: list[MergeNode] = []
        self._lock = threading.Lock()

    def add(self, **fields: Any) -> MergeNode:
        with self._lock:
            node = MergeNode(id=len(self.nodes), **fields)
            self.nodes.append(node)
            return node

    @property
    def root(self) -> MergeNode:
        return self.nodes[-1]

    def renumber(self) -> None:
        """Give nodes ids that do not depend on thread timing: leaves in partition order, then
        merge nodes by (level, first example); the root is last. Sibling subtrees are merged in
        parallel, so creation order alone would not be reproducible."""
        leaves = [n for n in self.nodes if not n.children]
        merges = sorted((n for n in self.nodes if n.children), key=lambda n: (n.level, n.examples))
        new_id = {n.id: i for i, n in enumerate(leaves + merges)}
        for node in self.nodes:
            node.id = new_id[node.id]
            node.children = [new_id[c] for c in node.children]
        self.nodes = sorted(self.nodes, key=lambda n: n.id)


@dataclass(frozen=True)
class MergeSettings:
    """Algorithm 2's settings."""

    threshold: int = 3  # t: the most candidates one merge call sees
    clustering: str = "kmeans"
    seed: int = 0
    asks: int = 1  # merge calls per predictor per round, as distinct rollouts
    max_demos: int = 0  # the most pooled demos per predictor; 0 keeps the best child's
    accept_z: float = Z


class Saved(Protocol):
    """Where finished nodes are kept between runs (``run.checkpoint.Checkpoint``)."""

    def load(self, kind: str, key: str) -> dict | None: ...

    def save(self, kind: str, key: str, value: dict) -> None: ...


class RoutedScores(Protocol):
    """How candidates are scored when each check runs with its own partition's demos (``route.DemoRoute``)."""

    kind: str

    def item_scores(self, candidate: Candidate, items: Sequence) -> list[float]: ...


@dataclass
class _Options:
    """A merge node's candidates, each distinct, with its scores on the node's checks."""

    score: Callable[[list[Candidate]], list[list[float]]]
    labels: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    runs: list[list[float]] = field(default_factory=list)

    def add(self, label: str, candidates: list[Candidate]) -> None:
        fresh = []
        for candidate in candidates:
            if candidate not in self.candidates and candidate not in fresh:
                fresh.append(candidate)
        if fresh:
            self.labels += [label] * len(fresh)
            self.candidates += fresh
            self.runs += self.score(fresh)


class ProgressiveMerge:
    def __init__(self, rt: Runtime, items_of: Callable[[Sequence], list[tuple[Any, dspy.Example]]],
                 embed: Callable[[Sequence[str]], Any], settings: MergeSettings, *, budget: Budget,
                 counters: Counters, saved: Saved | None = None, routed: RoutedScores | None = None):
        self.rt, self.items_of, self.embed, self.settings = rt, items_of, embed, settings
        self.budget, self.counters, self.saved = budget, counters, saved
        # With routed demos, candidates are instruction texts only and each check runs with its own
        # partition's demos. ``scored_as`` keys the saved nodes, so a node scored one way is never
        # reused for a run that scores another.
        self.texts_only = routed is not None
        self.scored_as = routed.kind if routed is not None else None
        self.item_scores = routed.item_scores if routed is not None else rt.item_scores
        self.tree = MergeTree()
        self.on_node: Callable[[MergeNode], None] = lambda node: None  # progress display

    def leaf(self, candidate: Candidate, examples: list[int], score: float, partition: str,
             checks: Sequence = ()) -> MergeNode:
        """A partition's optimized candidate; ``checks`` are the keys of its held-out examples."""
        if self.texts_only:
            candidate = {k: v for k, v in candidate.items() if is_text_key(k)}
        return self.tree.add(candidate=candidate, examples=sorted(examples), score=score, partition=partition,
                             checks=list(checks))

    def run(self, leaves: Sequence[MergeNode]) -> MergeNode:
        self._merge(list(leaves))
        self.tree.renumber()
        return self.tree.root

    def _merge(self, nodes: list[MergeNode]) -> MergeNode:
        if len(nodes) == 1:
            return nodes[0]
        if len(nodes) <= self.settings.threshold or self.settings.clustering == "none":
            return self._merge_group(nodes)
        # Cluster by what the optimizer wrote (instructions, tool texts), not by the demos' JSON: demos
        # of different tasks look alike to a text embedder, and clustering them made deep, lopsided trees.
        vectors = self.embed([candidate_text({k: v for k, v in n.candidate.items() if is_text_key(k)})
                              for n in nodes])
        # k = floor(sqrt(n)) as in the paper, but at least 2: with t = 2 and n = 3, one cluster would
        # hand the same nodes back and never finish.
        groups = clusters_of(vectors, max(2, math.isqrt(len(nodes))), self.settings.clustering, self.settings.seed)
        # Each cluster's subtree is independent: merge them in parallel, then merge their results.
        merged = self.rt.map(lambda idx: self._merge([nodes[i] for i in idx]), groups)
        return self._merge(merged)

    def _merge_group(self, nodes: list[MergeNode]) -> MergeNode:
        """One merge node (reused from the checkpoint when it was made before)."""
        examples = sorted(i for node in nodes for i in node.examples)
        check_keys = list(dict.fromkeys(k for node in nodes for k in node.checks))
        key = fingerprint([n.candidate for n in nodes], examples, check_keys,
                          *([self.scored_as] if self.scored_as else []))[:20]
        made = self.saved.load("merge", key) if self.saved else None
        if made is None:
            events = Counters()  # saved with the node, so a resumed run that reuses it still reports them
            made = {**self._make(nodes, check_keys, events), "events": events.to_dict()}
            if self.saved and made["made_by"] != "budget_exhausted":
                self.saved.save("merge", key, made)
        self.counters.absorb(made.pop("events", {}))
        logger.info("merged %d candidates on %d checks: score %.2f (%s)", len(nodes), len(check_keys),
                    made["score"], made["made_by"])
        node = self.tree.add(examples=examples, checks=check_keys, children=[n.id for n in nodes],
                             level=1 + max(n.level for n in nodes), **made)
        self.on_node(node)
        return node

    def _make(self, nodes: list[MergeNode], check_keys: list, events: Counters) -> dict:
        """The node's candidate, with the children's demos pooled: when the children's texts differ,
        the best of the LLM's merges unless it is clearly worse on the union of their checks than the
        best child or the best child's texts (no call); else the better of those two."""
        if self.rt.exhausted():
            # Out of budget: keep the child with the most evidence, unvalidated on the union.
            best = max(nodes, key=_evidence)
            events.add("merges_skipped_for_budget")
            return {"candidate": best.candidate, "score": best.score, "made_by": "budget_exhausted", "merge_calls": 0}
        items = self.items_of(check_keys)
        child_runs = self.rt.map(lambda n: self.item_scores(n.candidate, items), nodes)
        child_scores = [mean(runs) for runs in child_runs]
        best = max(range(len(nodes)), key=lambda i: (child_scores[i], len(nodes[i].checks), -i))
        keys = list(dict.fromkeys(k for node in nodes for k in node.candidate))
        differing = [k for k in keys if len({node.candidate.get(k) for node in nodes}) > 1]
        texts = [k for k in differing if is_text_key(k)]
        pooled = {k: merge_demos(k, nodes, self.settings.max_demos) for k in differing if not is_text_key(k)}
        ranked = [nodes[best]] + [n for i, n in enumerate(nodes) if i != best]  # best child's texts first

        def with_texts(chosen: dict) -> Candidate:
            return {k: chosen.get(k, pooled.get(k, next(n.candidate[k] for n in ranked if k in n.candidate)))
                    for k in keys}

        # The candidates that cost no call; the merged texts must not be clearly worse than the best of
        # them and the best child. The best child's score on the union is the highest of several noisy
        # ones, and its texts carry only its own partition's rules where the merge carries every child's,
        # so a merge that is not clearly worse is kept.
        options = _Options(lambda candidates: self.rt.map(lambda c: self.item_scores(c, items), candidates))
        if pooled or not texts:
            options.add("identical" if not texts else "pooled_demos", [with_texts({})])
        reference = max([child_runs[best], *options.runs], key=mean)
        merge, calls = self._ask(nodes, texts, with_texts, options, reference, events) if texts else (None, 0)
        scores = [mean(r) for r in options.runs]
        record = {"merge_calls": calls, "child_scores": child_scores, "attempts": scores, "attempted": options.labels}
        if merge is not None:
            return {"candidate": options.candidates[merge], "score": scores[merge], "made_by": "llm_merge", **record}
        won = max((i for i, label in enumerate(options.labels) if label != "llm_merge"), key=lambda i: scores[i],
                  default=None)
        if won is not None and scores[won] >= child_scores[best]:
            return {"candidate": options.candidates[won], "score": scores[won], "made_by": options.labels[won],
                    **record}
        events.add("merges_lost_to_best_child")
        return {"candidate": nodes[best].candidate, "score": child_scores[best], "made_by": "best_child", **record}

    def _ask(self, nodes, texts, with_texts, options: _Options, reference: list[float], events: Counters):
        """Rounds of ``asks`` merges (distinct rollouts), all scored on the same checks: an optimizer right
        half the time then still yields the right merge most of the time; a round that yields none kept
        asks again. Returns the kept merge's index in ``options`` (or None) and the calls made."""
        calls = 0
        for round_ in range(MERGE_ROUNDS):
            if round_:
                if self.rt.exhausted():
                    break
                events.add("merges_asked_again")
            rollouts = range(round_ * self.settings.asks, (round_ + 1) * self.settings.asks)
            asks = [(ask, name) for ask in rollouts for name in texts]
            merged = self.rt.map(lambda job: self._merge_text(job[1], nodes, events, rollout=job[0]), asks)
            calls += len(asks)
            options.add("llm_merge", [with_texts({name: text for (a, name), text in zip(asks, merged) if a == ask})
                                      for ask in rollouts])
            merges = [i for i, label in enumerate(options.labels) if label == "llm_merge"]
            merge = max(merges, key=lambda i: (mean(options.runs[i]), i), default=None)
            if merge is not None and not clearly_better(reference, options.runs[merge], self.settings.accept_z):
                return merge, calls
        return None, calls

    def _merge_text(self, name: str, nodes: list[MergeNode], events: Counters, rollout: int = 0) -> str:
        per_item = max(400, self.budget.chars // len(nodes) - 100)
        nodes = [node for node in nodes if name in node.candidate]
        listing = "\n\n".join(
            f"## Instruction {i + 1} (score {node.score:.2f} on {len(node.checks) or len(node.examples)} tasks)\n"
            f"{clip(node.candidate[name], per_item)}"
            for i, node in enumerate(nodes)
        )
        if any(len(node.candidate[name]) > per_item for node in nodes):
            events.add("prompts_clipped")
        # Abstract, never much longer than the children together (a tenth more, for the joins): rules
        # that hold for one kind of input only must survive the merge, and the validation and the
        # final check weigh the longer prompt's cost.
        texts = [node.candidate[name] for node in nodes]
        limit = min(self.budget.instruction_limit(max(texts, key=len)), max(200, int(MERGE_ROOM * sum(map(len, texts)))))
        answer = self.rt.ask(MergeInstructions, rollout=rollout, step=describe_predictor(self.rt.student, name),
                             candidates=listing, length_limit=f"{limit} characters")
        merged = clean_instruction(answer.merged_instruction if answer is not None else None, self.budget,
                                   current=max(texts, key=len))
        if merged is not None and len(merged) > limit:
            events.add("merges_too_long")
            merged = None
        if merged is None:
            # Fall back to the child with the most evidence: never lose a good instruction to a bad merge.
            events.add("merges_rejected")
            return max(nodes, key=_evidence).candidate[name]
        return merged


def _evidence(node: MergeNode) -> tuple[float, int]:
    """How much a node's score is worth: examples right, then examples judged on."""
    judged = len(node.checks or node.examples)
    return node.score * judged, judged


def merge_demos(key: str, nodes: Sequence[MergeNode], max_demos: int = 0) -> str:
    """The children's demos for one predictor, interleaved (best-scoring child first), deduplicated,
    and capped at ``max_demos`` or the largest child's count if that is more (the limit an inner
    optimizer chose). Partitions with few successful runs have few demos of their own, and a
    merge is where they can pool up to the limit.
    The node's validation on the union then scores the result."""
    ranked = sorted(nodes, key=lambda n: (-n.score, n.examples))  # not ids: they depend on thread timing
    lists = [json.loads(n.candidate.get(key, "[]")) for n in ranked]
    cap = max([max_demos] + [len(demos) for demos in lists])
    merged, seen = [], set()
    for position in range(cap):
        for demos in lists:
            if position < len(demos):
                blob = json.dumps(demos[position], sort_keys=True)
                if blob not in seen and len(merged) < cap:
                    seen.add(blob)
                    merged.append(demos[position])
    return json.dumps(merged, ensure_ascii=False, sort_keys=True)

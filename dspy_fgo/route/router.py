"""Route: where one merged prompt cannot serve every partition, send each input to its specialist,
or (``route="demos"``, ``DemoRoute``) to its own partition's demos under one merged instruction.

After the merge (Algorithm 2) and the final check, FGO has one program for every input; with
routed demos (``route="demos"``, and ``route=True`` too), one instruction whose inputs each run with
their own partition's demos. With ``FGO(route=True)`` each partition's own optimized instruction
(its specialist: the merge tree's leaf), with the partition's demos (its pool, cut per input,
under ``nearest_demos``), is compared with that program on the partition's held-out checks, and
keeps serving the partition's inputs only when it gets at least ``ROUTE_MARGIN`` more of them
right. The specialist's changes were accepted on those same
checks, each by one more example right, so a one-example gain is what that selection alone can
produce: a route must win by more. Each input then goes to the partition whose training inputs it
is nearest to (cosine similarity to the centroid of their input embeddings): to that partition's
specialist if it routes, else to the single program (with that partition's demos).

Demos are routed under ``route=True`` too because the specialist gate can rarely be passed on a
few checks, and a partition that does not route would otherwise run with one merged program's
pooled demos, which serve every kind of input a little and none well. Experts are only partitions'
own specialists, each serving its own kind of input: a specialist judged on the few examples that
selected it is a noisy choice, which is why ``ROUTE_MARGIN`` asks for more than one example.
``route="auto"`` (the default) weighs the routed-demos program against one merged program on the
whole valset and routes only when that clearly pays.

The routed program is a ``Routed`` module: a list of ordinary copies of the student (so
``named_predictors()``, ``dspy.Evaluate`` and ``inspect_history`` work as usual) and a router whose
state is plain JSON. With the offline embedder the router carries its own TF-IDF vocabulary and
adds no LM call; with a user's embedder it embeds each input once. ``optimized.save("p.json")``
writes both; ``load_routed(student, "p.json")`` puts them back on a fresh student.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import dspy
import numpy as np

from dspy_fgo.candidate import Candidate, apply_candidate, candidate_key, is_text_key
from dspy_fgo.divide.partition import input_text
from dspy_fgo.divide.space import Space, unit_centroids
from dspy_fgo.route.nearest import NearestDemos
from dspy_fgo.run.runtime import mean

logger = logging.getLogger("dspy_fgo")

ROUTE_MARGIN = 2  # held-out examples routing must gain over the single candidate to be chosen
ROUTED_DEMOS = (True, "demos", "auto")  # the route settings under which each input may run with its partition's demos
FALLBACK_RATIO = 0.5  # an input less similar than this times the least similar training input is "unlike"


class Router:
    """Nearest centroid: each input goes to the expert whose training inputs it is most similar to,
    or to ``fallback`` when it is empty or unlike all of them."""

    def __init__(self, space: Space, centroids: np.ndarray, fallback: int, min_similarity: float,
                 targets: Sequence[int] | None = None):
        self.space, self.centroids = space, np.asarray(centroids, dtype=float)
        self.fallback, self.min_similarity = fallback, float(min_similarity)
        self.targets = list(range(len(self.centroids)) if targets is None else targets)  # centroid -> expert

    @classmethod
    def fit(cls, space: Space, vectors_by_group: Sequence[np.ndarray], fallback: int,
            targets: Sequence[int] | None = None) -> "Router":
        centroids = unit_centroids(vectors_by_group)
        own = [float((np.asarray(v) @ c).min()) for v, c in zip(vectors_by_group, centroids)]
        return cls(space, centroids, fallback, FALLBACK_RATIO * max(0.0, min(own)), targets)

    def pick_vectors(self, vectors: np.ndarray) -> list[int]:
        similarity = np.asarray(vectors) @ self.centroids.T
        picks = []
        for row in similarity:
            best = int(row.argmax())  # ties go to the lower index: deterministic
            if row[best] <= 0 or row[best] < self.min_similarity:
                logger.debug("routing an input to fallback expert %d (similarity %.3f, needs %.3f)",
                             self.fallback, row[best], self.min_similarity)
                picks.append(self.fallback)
            else:
                picks.append(self.targets[best])
        return picks

    def pick(self, inputs: dict) -> int:
        return self.pick_vectors(self.space([input_text(inputs)]))[0]

    def to_dict(self) -> dict:
        return {"space": self.space.to_dict(), "fallback": self.fallback, "min_similarity": self.min_similarity,
                "targets": self.targets, "centroids": [[round(float(x), 6) for x in c] for c in self.centroids]}

    @classmethod
    def from_dict(cls, data: dict, embedder: Callable | None = None) -> "Router":
        return cls(Space.from_dict(data["space"], embedder), data["centroids"], data["fallback"],
                   data["min_similarity"], data.get("targets"))


class Routed(dspy.Module):
    """A program per input kind: ``experts[router.pick(inputs)]`` answers each call.

    ``experts`` are copies of the student with their own instructions and demos; the last one may be
    the fallback (no centroid of its own). ``save("p.json")`` stores the experts' state and the router."""

    def __init__(self, experts: list[dspy.Module], router: Router, nearest: NearestDemos | None = None):
        super().__init__()
        self.experts = list(experts)
        self.router = router
        self.nearest = nearest  # set: each expert's demos are a pool, cut per input (dspy_fgo.route.nearest)

    def forward(self, **inputs):
        expert = self.experts[self.router.pick(inputs)]
        if self.nearest is not None:
            expert = self.nearest.cut_program(expert, inputs)
        return expert(**inputs)

    def dump_state(self, json_mode=True):
        state = {**super().dump_state(json_mode=json_mode), "fgo_router": self.router.to_dict(),
                 "fgo_experts": len(self.experts)}
        if self.nearest is not None:
            state["fgo_nearest_demos"] = self.nearest.to_dict()
        return state

    def load_state(self, state, **kwargs):
        state = dict(state)
        router = state.pop("fgo_router", None)
        nearest = state.pop("fgo_nearest_demos", None)
        state.pop("fgo_experts", None)
        if router is not None:
            self.router = Router.from_dict(router, getattr(self.router.space, "embedder", None))
        self.nearest = None
        if nearest is not None:
            self.nearest = NearestDemos.from_dict(nearest, getattr(self.router.space, "embedder", None))
        return super().load_state(state, **kwargs)


def load_routed(student: dspy.Module, path: str | Path, embedder: Callable | None = None) -> Routed:
    """A routed program saved with ``optimized.save(path)`` (JSON), rebuilt on a fresh ``student``.

    No pickle: the file holds instructions, demos and the router's numbers only. Pass ``embedder``
    when FGO was given one (the router embeds each input with it)."""
    state = json.loads(Path(path).read_text())
    if "fgo_router" not in state:
        raise ValueError(f"{path} is not a routed FGO program (no router state); load it with student.load(path)")
    router = Router.from_dict(state["fgo_router"], embedder)
    routed = Routed([student.deepcopy() for _ in range(state["fgo_experts"])], router)
    routed.load_state(state)
    return routed


# -- deciding where to route (compile time) -----------------------------------------------------

class RoutePlan:
    """Which partitions keep their own specialist instead of the returned single program."""

    def __init__(self, rt, items_of: Callable, trainset: Sequence[dspy.Example], embedder: Callable | None,
                 counters, margin: int = ROUTE_MARGIN):
        self.rt, self.items_of, self.counters, self.margin = rt, items_of, counters, margin
        texts = [input_text(ex) for ex in trainset]
        self.space = Space.fit(texts, embedder)
        self._train = self.space(texts)
        self._vectors: dict[Any, np.ndarray] = {}

    def decide(self, leaves: Sequence, singles: Sequence[Candidate], specialists: Sequence[Candidate] | None = None,
               item_scores: Callable | None = None) -> list[bool]:
        """Per partition (merge-tree leaf): its specialist serves its inputs when it gets at least
        ``margin`` more of the partition's held-out checks right than its ``singles`` entry (what
        the returned program runs for that partition's inputs) does there.

        ``specialists``: what each partition would run if routed (default: the leaf's candidate,
        whose held-out score is known); ``item_scores(candidate, items)``: how a candidate is scored
        on them (default: as it is), so both sides run as the returned program would."""
        specialists = specialists or [leaf.candidate for leaf in leaves]
        item_scores = item_scores or self.rt.item_scores
        routed = []
        for leaf, single, specialist in zip(leaves, singles, specialists):
            if self.rt.exhausted() or not leaf.checks or specialist == single:
                reason = ("budget exhausted" if self.rt.exhausted() else "no held-out checks" if not leaf.checks
                          else "the specialist is the returned program")
                leaf.route = {"routes": False, "reason": reason}
                routed.append(False)
                continue
            items = self.items_of(leaf.checks)
            single_score = mean(item_scores(single, items))
            specialist_score = leaf.score if specialist == leaf.candidate else mean(item_scores(specialist, items))
            gain = (specialist_score - single_score) * len(items)
            routes = gain >= self.margin - 1e-9
            self.counters.add("partitions_routed" if routes else "partitions_kept_merged")
            leaf.route = {"routes": routes, "specialist_score": specialist_score, "single_score": single_score,
                          "gain_examples": round(gain, 3), "needs": self.margin}
            logger.info("partition %s: specialist %.2f vs returned program %.2f on %d checks -> %s", leaf.partition,
                        specialist_score, single_score, len(items), "route" if routes else "merged")
            routed.append(routes)
        return routed

    def router(self, leaves: Sequence, routed: Sequence[bool]) -> Router:
        """A centroid per partition; a routed one leads to its specialist, the others to the single
        program (the last expert), so their inputs are never sent to another partition's specialist."""
        experts = [i for i, r in enumerate(routed) if r]
        fallback = len(experts)
        targets = [experts.index(i) if r else fallback for i, r in enumerate(routed)]
        return self.fit_router([leaf.examples for leaf in leaves], fallback, targets)

    def fit_router(self, groups: Sequence[Sequence[int]], fallback: int, targets: Sequence[int] | None = None) -> Router:
        """A nearest-centroid router with one centroid per group of trainset positions."""
        return Router.fit(self.space, [self._train[list(group)] for group in groups], fallback, targets)

    def item_scores(self, router: Router, candidates: Sequence[Candidate], items) -> list[float]:
        """Each item answered by the candidate it routes to (mostly cached: the merge ran them there)."""
        if not items:
            return []
        picks = router.pick_vectors(self._vectors_of(items))
        runs = {}
        for i, candidate in enumerate(candidates):
            mine = [item for item, pick in zip(items, picks) if pick == i]
            runs.update(zip((k for k, _ in mine), self.rt.item_scores(candidate, mine)))
        return [runs[k] for k, _ in items]

    def _vectors_of(self, items) -> np.ndarray:
        missing = [(k, ex) for k, ex in items if k not in self._vectors]
        if missing:
            for (k, _), v in zip(missing, self.space([input_text(ex) for _, ex in missing])):
                self._vectors[k] = v
        return np.stack([self._vectors[k] for k, _ in items])


# -- route="demos": one instruction, each input with its own partition's demos ---------------------

class DemoRoute:
    """``FGO(route="demos")``: the merge decides the instructions only, and each input runs with the
    demos its nearest partition kept (those demos won or tied on that partition's held-out checks).

    A merged program must otherwise carry at most ``max_demos`` demos for every kind of input, and
    a merge tree's tournament can hand one kind's demos to all the others. Demos are examples
    of one kind of input; routing them needs no decision on a handful of checks, only the
    partition's own evidence. An input unlike every partition gets the fallback: every partition's
    demos interleaved, up to ``max_demos``. Candidates here are instruction texts; ``score`` runs
    each item with the demos it routes to, exactly as the returned ``Routed`` program will."""

    def __init__(self, plan: RoutePlan, leaves: Sequence, demos: Sequence[Candidate], fallback: Candidate,
                 nearest: NearestDemos | None = None, single: Candidate | None = None):
        self.plan = plan
        self.demos = [dict(d) for d in demos] + [dict(fallback)]  # the last is the fallback's
        # The demos one merged program would carry instead (``route="auto"`` weighs it): every
        # partition's kept demos interleaved up to ``max_demos``; the fallback unless it is a pool.
        self.single = dict(fallback if single is None else single)
        self.router = plan.fit_router([leaf.examples for leaf in leaves], len(demos))
        self.nearest = nearest  # set: each partition's demos are a pool, cut per input
        self.signatures = {name: p.signature for name, p in plan.rt.student.named_predictors()} if nearest else {}
        # How merges scored with this route are keyed in a checkpoint (``merge.ProgressiveMerge``).
        self.kind = "nearest demos routed" if nearest else "demos routed"

    def experts(self, texts: Candidate) -> list[Candidate]:
        """``texts`` with each partition's demos, then with the fallback's."""
        return [self.expert(texts, i) for i in range(len(self.demos))]

    def expert(self, texts: Candidate, i: int) -> Candidate:
        """``texts`` with partition ``i``'s demos (the fallback's for the last index)."""
        return {**{k: v for k, v in texts.items() if is_text_key(k)}, **self.demos[i]}

    def merged(self, texts: Candidate) -> Candidate:
        """``texts`` with ``single``'s demos: the one program that routing is weighed against."""
        return {**{k: v for k, v in texts.items() if is_text_key(k)}, **self.single}

    def item_scores(self, texts: Candidate, items) -> list[float]:
        return self.routed_scores(self.experts(texts), items)

    def routed_scores(self, experts: Sequence[Candidate], items) -> list[float]:
        """Each item answered by the expert (one per partition, then the fallback) it routes to,
        with its demos cut to the item's nearest when they are a pool: as ``program`` will run it."""
        if self.nearest is None:
            return self.plan.item_scores(self.router, experts, items)
        picks = self.router.pick_vectors(self.plan._vectors_of(items))
        return self._cut_scores([(experts[pick], item) for item, pick in zip(items, picks)])

    def scores_of(self, candidate: Candidate, items) -> list[float]:
        """``candidate`` on each item, with its demos cut to the item's nearest when they are a pool."""
        if self.nearest is None:
            return self.plan.rt.item_scores(candidate, items)
        return self._cut_scores([(candidate, item) for item in items])

    def _cut_scores(self, pairs) -> list[float]:
        # Each item with the demos nearest to it; items that get the same demos are run together.
        rt = self.plan.rt
        groups: dict[str, tuple[Candidate, list]] = {}
        for candidate, (key, example) in pairs:
            cut = self.nearest.cut_candidate(candidate, example.inputs().toDict(), self.signatures)
            groups.setdefault(candidate_key(cut), (cut, []))[1].append((key, example))
        scored = rt.map(lambda group: list(zip([k for k, _ in group[1]], rt.item_scores(*group))),
                        list(groups.values()))
        scores = dict(pair for group in scored for pair in group)
        return [scores[key] for _, (key, _) in pairs]

    def program(self, student: dspy.Module, texts: Candidate) -> "Routed":
        return Routed([apply_candidate(student, c) for c in self.experts(texts)], self.router, self.nearest)

"""Route: where one merged prompt cannot serve every partition, send each input to its specialist.

After the merge (Algorithm 2) every merge node knows its single candidate (the accepted merge, or
its best child) and how it scores on the union of its children's held-out checks. With
``FGO(route=True)`` each node is also scored *routed*: every check goes to the specialist whose
training inputs it is nearest to (cosine similarity to the centroid of their input embeddings),
and is answered by that specialist's instructions and demos. Bottom-up, a node routes when routing
gets at least ``ROUTE_MARGIN`` more of its checks right than its single candidate; otherwise it
stays merged and its subtree is served by that one candidate. The specialists' own checks are the
ones their changes were accepted on, each by one more example right, so a one-example gain is what
that selection alone can produce: a route must win by more.

The routed program is a ``Routed`` module: a list of ordinary copies of the student (so
``named_predictors()``, ``dspy.Evaluate`` and ``inspect_history`` work as usual) and a router whose
state is plain JSON. With the offline embedder the router carries its own TF-IDF vocabulary and
adds no LM call; with a user's embedder it embeds each input once. ``optimized.save("p.json")``
writes both; ``load_routed(student, "p.json")`` puts them back on a fresh student.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import dspy
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from dspy_fgo.candidate import Candidate, apply_candidate
from dspy_fgo.divide import input_text

logger = logging.getLogger("dspy_fgo")

ROUTE_MARGIN = 2  # held-out examples routing must gain over the single candidate to be chosen
MAX_FEATURES = 2048  # the offline router's vocabulary: bounded however large the trainset
FALLBACK_RATIO = 0.5  # an input less similar than this times the least similar training input is "unlike"


class Space:
    """Turns input texts into unit vectors: a TF-IDF fitted on the trainset's inputs (state: JSON),
    or a user's embedder (a callable or ``dspy.Embedder``, which must be given again at load)."""

    def __init__(self, embedder: Callable | None = None, vocabulary: dict | None = None, idf: list | None = None):
        self.embedder = embedder
        self.tfidf = None
        if embedder is None and vocabulary is not None:
            self.tfidf = _tfidf(vocabulary=vocabulary)
            self.tfidf.idf_ = np.asarray(idf, dtype=float)

    @classmethod
    def fit(cls, texts: Sequence[str], embedder: Callable | None = None) -> "Space":
        space = cls(embedder)
        if embedder is None:
            space.tfidf = _tfidf(max_features=MAX_FEATURES).fit(list(texts))
        return space

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.embedder is not None:
            vectors = np.asarray(self.embedder(texts), dtype=float)
        else:
            vectors = self.tfidf.transform(texts).toarray()
        return normalize(vectors)  # a zero vector (empty input, no known word) stays zero

    def to_dict(self) -> dict:
        if self.embedder is not None:
            return {"kind": "embedder"}
        vocabulary = {term: int(i) for term, i in sorted(self.tfidf.vocabulary_.items())}
        return {"kind": "tfidf", "vocabulary": vocabulary, "idf": [round(float(x), 6) for x in self.tfidf.idf_]}

    @classmethod
    def from_dict(cls, data: dict, embedder: Callable | None = None) -> "Space":
        if data["kind"] == "embedder":
            if embedder is None:
                raise ValueError("this routed program was built with a user embedder: pass the same one, "
                                 "load_routed(student, path, embedder=...)")
            return cls(embedder)
        return cls(vocabulary=data["vocabulary"], idf=data["idf"])


def _tfidf(**kwargs) -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), **kwargs)


class Router:
    """Nearest centroid: each input goes to the expert whose training inputs it is most similar to,
    or to ``fallback`` when it is empty or unlike all of them."""

    def __init__(self, space: Space, centroids: np.ndarray, fallback: int, min_similarity: float):
        self.space, self.centroids = space, np.asarray(centroids, dtype=float)
        self.fallback, self.min_similarity = fallback, float(min_similarity)

    @classmethod
    def fit(cls, space: Space, vectors_by_expert: Sequence[np.ndarray], fallback: int) -> "Router":
        centroids = normalize(np.stack([np.asarray(v).mean(axis=0) for v in vectors_by_expert]))
        own = [float((np.asarray(v) @ c).min()) for v, c in zip(vectors_by_expert, centroids)]
        return cls(space, centroids, fallback, FALLBACK_RATIO * max(0.0, min(own)))

    def pick_vectors(self, vectors: np.ndarray) -> list[int]:
        similarity = np.asarray(vectors) @ self.centroids.T
        picks = []
        for row in similarity:
            best = int(row.argmax())  # ties go to the lower index: deterministic
            if row[best] <= 0 or row[best] < self.min_similarity:
                logger.debug("routing an input to fallback expert %d (similarity %.3f, needs %.3f)",
                             self.fallback, row[best], self.min_similarity)
                best = self.fallback
            picks.append(best)
        return picks

    def pick(self, inputs: dict) -> int:
        return self.pick_vectors(self.space([input_text(inputs)]))[0]

    def to_dict(self) -> dict:
        return {"space": self.space.to_dict(), "fallback": self.fallback, "min_similarity": self.min_similarity,
                "centroids": [[round(float(x), 6) for x in c] for c in self.centroids]}

    @classmethod
    def from_dict(cls, data: dict, embedder: Callable | None = None) -> "Router":
        return cls(Space.from_dict(data["space"], embedder), data["centroids"], data["fallback"],
                   data["min_similarity"])


class Routed(dspy.Module):
    """A program per input kind: ``experts[router.pick(inputs)]`` answers each call.

    ``experts`` are copies of the student with their own instructions and demos; the last one may be
    the fallback (no centroid of its own). ``save("p.json")`` stores the experts' state and the router."""

    def __init__(self, experts: list[dspy.Module], router: Router):
        super().__init__()
        self.experts = list(experts)
        self.router = router

    def forward(self, **inputs):
        return self.experts[self.router.pick(inputs)](**inputs)

    def dump_state(self, json_mode=True):
        return {**super().dump_state(json_mode=json_mode), "fgo_router": self.router.to_dict(),
                "fgo_experts": len(self.experts)}

    def load_state(self, state, **kwargs):
        state = dict(state)
        router = state.pop("fgo_router", None)
        state.pop("fgo_experts", None)
        if router is not None:
            self.router = Router.from_dict(router, getattr(self.router.space, "embedder", None))
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

@dataclass
class Expert:
    candidate: Candidate
    examples: list[int]  # trainset positions whose inputs define its centroid
    name: str


class RoutePlan:
    """Bottom-up route-or-merge decisions over a finished merge tree (``dspy_fgo.merge``)."""

    def __init__(self, rt, nodes: list, items_of: Callable, trainset: Sequence[dspy.Example], space: Space,
                 counters, margin: int = ROUTE_MARGIN):
        self.rt, self.nodes, self.items_of, self.counters, self.margin = rt, nodes, items_of, counters, margin
        self.space = space
        self._train = space([input_text(ex) for ex in trainset])
        self._vectors: dict[Any, np.ndarray] = {}

    def resolve(self, node) -> list[Expert]:
        """The experts that serve ``node``'s inputs: one when it stays merged, its children's when it routes."""
        if not node.children:
            return [Expert(node.candidate, node.examples, node.partition or f"node {node.id}")]
        experts = [e for child in node.children for e in self.resolve(self.nodes[child])]
        single = Expert(node.candidate, node.examples, f"node {node.id}")
        if self.rt.exhausted() or not node.checks:
            node.route = {"routes": False, "reason": "budget exhausted" if node.checks else "no held-out checks"}
            return [single]
        items = self.items_of(node.checks)
        routed = self.score(experts, single, items)
        gain = (routed - node.score) * len(items)
        routes = gain >= self.margin - 1e-9
        self.counters.add("nodes_routed" if routes else "nodes_kept_merged")
        node.route = {"routes": routes, "routed_score": routed, "single_score": node.score,
                      "gain_examples": round(gain, 3), "needs": self.margin, "experts": [e.name for e in experts]}
        logger.info("node %d: routed %.2f vs single %.2f on %d checks -> %s", node.id, routed, node.score,
                    len(items), "route" if routes else "merged")
        return experts if routes else [single]

    def router(self, experts: Sequence[Expert], fallback: int) -> Router:
        return Router.fit(self.space, [self._train[e.examples] for e in experts], fallback)

    def score(self, experts: Sequence[Expert], fallback: Expert, items) -> float:
        """Each item answered by the expert it routes to (mostly cached: the merge ran every child on them)."""
        router = self.router(experts, len(experts))
        picks = router.pick_vectors(self._vectors_of(items))
        everyone = list(experts) + [fallback]
        total = 0.0
        for i, expert in enumerate(everyone):
            mine = [item for item, pick in zip(items, picks) if pick == i]
            if mine:
                total += self.rt.score(expert.candidate, mine) * len(mine)
        return total / len(items)

    def _vectors_of(self, items) -> np.ndarray:
        missing = [(k, ex) for k, ex in items if k not in self._vectors]
        if missing:
            for (k, _), v in zip(missing, self.space([input_text(ex) for _, ex in missing])):
                self._vectors[k] = v
        return np.stack([self._vectors[k] for k, _ in items])

    def program(self, student: dspy.Module, experts: Sequence[Expert], fallback: Expert) -> Routed:
        """The routed program: ``experts`` by centroid, ``fallback`` (the root's single candidate) for the rest."""
        everyone = list(experts) + [fallback]
        return Routed([apply_candidate(student, e.candidate) for e in everyone], self.router(experts, len(experts)))

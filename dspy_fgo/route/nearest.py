"""Nearest demos: each input runs with the demos of its partition's pool that are most like it.

``FGO(route="demos")`` and ``FGO(route=True)``, where ``nearest_demos`` is on unless set to
``False`` (under ``route=True`` a routed specialist keeps its partition's pool). With it off, every
input of a partition runs with the same ``max_demos`` demos, chosen from the partition's training
runs. Here each partition
that kept demos keeps a larger pool instead: the solved runs and labeled examples of its training
*and* held-out examples (the runs FGO already made, so no LM call), and each input runs with the
``max_demos`` demos of that pool whose inputs are most similar to its own (most similar first, as
DSPy's ``KNNFewShot`` orders them), never with a demo of itself. That the partition keeps demos at
all is still decided on its held-out checks (``dspy_fgo.optimize.reflect``); what its pool holds afterwards
is a refit on all of its examples, as a model is refit on train and validation after selection.
Because an input never sees its own demo, the merges and the final check can still score every
check fairly (a leave-one-out choice).

Why: demos similar to the input help most (Liu et al. 2022, "What Makes Good In-Context Examples
for GPT-3?"; DSPy's ``KNNFewShot``), and fixed demos chosen on a partition's few checks fit those
checks more than fresh inputs (``benchmarks/README.md`` measures both). The prompt stays bounded: an
input sees at most ``max_demos`` demos however large its partition's pool is.
"""

from __future__ import annotations

import json
from typing import Sequence

import dspy
import numpy as np

from dspy_fgo.candidate import DEMOS, Candidate
from dspy_fgo.divide.partition import input_text
from dspy_fgo.divide.space import Space
from dspy_fgo.candidate import is_own_demo, plain_values
from dspy_fgo.optimize.demos import balanced, normalized_label

POOL_PER_DEMO = 8  # a partition's pool holds at most this many times max_demos: a saved program stays bounded


class NearestDemos:
    """Cuts each predictor's demo pool to the ``k`` demos nearest to an input (in ``space``).

    ``space`` is fitted on the training and held-out inputs both (a pool holds demos of either, and
    a word that only held-out examples use must still count). ``labels`` are the fields the examples label (``answer``): with ``balance``, the nearest demos
    give each repeated label the same share, as a partition's fixed demos do (``dspy_fgo.optimize.demos``)."""

    def __init__(self, space: Space, k: int, labels: Sequence[str] = (), balance: bool = True):
        self.space, self.k, self.labels, self.balance = space, int(k), list(labels), bool(balance)
        self._vectors: dict[str, np.ndarray] = {}  # a pool's texts are embedded once, not per input

    @classmethod
    def fit(cls, trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example] | None, k: int,
            balance: bool = True, embedder=None) -> "NearestDemos":
        """As FGO fits it (and a rescore must, to rebuild the same program): the space on the
        training and held-out inputs, the labels from the trainset."""
        texts = [input_text(ex) for ex in [*trainset, *(valset or [])]]
        return cls(Space.fit(texts, embedder), k, label_fields(trainset), balance)

    def choose(self, pool: Sequence[dict], inputs: dict, input_fields: Sequence[str]) -> list[dict]:
        """The ``k`` demos of ``pool`` most similar to ``inputs``, most similar first; never the
        input's own (a demo that agrees with it on every input field it has)."""
        plain = plain_values(inputs)
        rest = [d for d in pool if not is_own_demo(d, plain)]
        if not rest:
            return []
        texts = [input_text({f: d[f] for f in input_fields if f in d}) for d in rest]
        similarity = self._embed(texts) @ self.space([input_text(inputs)])[0]
        order = sorted(range(len(rest)), key=lambda i: (-similarity[i], i))  # ties in pool order
        ranked = [(rest[i], self._label(rest[i]), (0, rank)) for rank, i in enumerate(order)]
        chosen = balanced(ranked, self.k) if self.balance else ranked[:self.k]
        return [demo for demo, _, _ in sorted(chosen, key=lambda d: d[2])]

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self.space(missing)))
        return np.stack([self._vectors[t] for t in texts])

    def _label(self, demo: dict):
        return normalized_label([demo[f] for f in self.labels if f in demo])

    def cut_candidate(self, candidate: Candidate, inputs: dict, signatures: dict) -> Candidate:
        """``candidate`` with each predictor's demos cut to those for ``inputs`` (compile time)."""
        cut = dict(candidate)
        for key, value in candidate.items():
            name = key.removesuffix(DEMOS)
            if key.endswith(DEMOS) and name in signatures:
                demos = self.choose(json.loads(value), inputs, list(signatures[name].input_fields))
                cut[key] = json.dumps(demos, ensure_ascii=False, sort_keys=True, default=str)
        return cut

    def cut_program(self, program: dspy.Module, inputs: dict) -> dspy.Module:
        """A copy of ``program`` whose predictors carry the demos for ``inputs`` (inference); a copy
        per call, so that threads answering different inputs never share demos."""
        if not any(p.demos for _, p in program.named_predictors()):
            return program
        copy = program.deepcopy()
        for _, predictor in copy.named_predictors():
            if predictor.demos:
                pool = [dict(d.toDict() if hasattr(d, "toDict") else d) for d in predictor.demos]
                chosen = self.choose(pool, inputs, list(predictor.signature.input_fields))
                predictor.demos = [dspy.Example(**d) for d in chosen]
        return copy

    def to_dict(self) -> dict:
        return {"k": self.k, "labels": self.labels, "balance": self.balance, "space": self.space.to_dict()}

    @classmethod
    def from_dict(cls, data: dict, embedder=None) -> "NearestDemos":
        """``embedder``: the user's, when the space was built with one (it is not saved)."""
        space = Space.from_dict(data["space"], embedder)
        return cls(space, data["k"], data.get("labels", ()), data.get("balance", True))


def label_fields(trainset: Sequence[dspy.Example]) -> list[str]:
    """The fields the trainset labels (its examples' non-input keys), in first-seen order."""
    fields: dict[str, None] = {}
    for example in trainset:
        try:
            fields.update(dict.fromkeys(example.labels().keys()))
        except ValueError:  # no input keys declared: nothing is known to be a label
            continue
    return list(fields)

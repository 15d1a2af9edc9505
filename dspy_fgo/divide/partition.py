"""Divide: split the trainset into partitions (the paper's Section 3.2, "Divide").

``partition_by`` may be a field name or an ``example -> key`` callable (category partitioning, as
the paper does for ALFWorld), ``"random"`` (as for GAIA and LogisticsQA), ``"difficulty"`` or ``Imbalanced(beta)`` (the paper's
ablations, Tables 5 and 3), ``None`` for automatic
(cluster the examples' input text, so similar tasks land together), or a ``Partitioner``.
Partitions smaller than ``min_size`` are pooled rather than optimized alone, and that is reported.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import dspy
import numpy as np
from sklearn.cluster import KMeans

from dspy_fgo.divide.space import Space, unit_centroids


@dataclass
class Partition:
    name: str
    indices: list[int]  # positions in the trainset


class Partitioner:
    """Base class: ``split`` returns ``{partition name: [trainset positions]}``."""

    def split(self, examples: Sequence[dspy.Example], *, n_partitions: int | None, seed: int, embed) -> dict[str, list[int]]:
        raise NotImplementedError

    def check(self, examples: Sequence[dspy.Example]) -> None:
        """Raise a clear error for examples this partitioner cannot split (called before any LM call)."""


class ByKey(Partitioner):
    """One partition per value of a field (or of ``key(example)``)."""

    def __init__(self, key: str | Callable[[dspy.Example], object]):
        self.key = key

    def _value(self, example: dspy.Example, index: int):
        if callable(self.key):
            return self.key(example)
        if self.key not in example:
            raise ValueError(
                f"partition_by={self.key!r}: trainset[{index}] has no field {self.key!r} "
                f"(its fields: {sorted(example.keys())})"
            )
        return example[self.key]

    def check(self, examples):
        for i, example in enumerate(examples):
            self._value(example, i)

    def split(self, examples, *, n_partitions, seed, embed):
        groups: dict[str, list[int]] = {}
        for i, example in enumerate(examples):
            groups.setdefault(str(self._value(example, i)), []).append(i)
        return dict(sorted(groups.items()))


class RandomSplit(Partitioner):
    """A seeded shuffle dealt into ``n_partitions`` near-equal parts."""

    def split(self, examples, *, n_partitions, seed, embed):
        n = n_partitions or default_partition_count(len(examples))
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        return {f"random-{p}": sorted(order[p::n]) for p in range(n)}


class ByEmbedding(Partitioner):
    """KMeans on the embedded input text of each example: similar tasks land together."""

    def split(self, examples, *, n_partitions, seed, embed):
        n = n_partitions or default_partition_count(len(examples))
        texts = [input_text(ex) for ex in examples]
        labels = KMeans(n_clusters=n, random_state=seed, n_init=10).fit_predict(embed(texts))
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            groups.setdefault(int(label), []).append(i)
        # Name clusters by their first member so names do not depend on KMeans' label order.
        ordered = sorted(groups.values(), key=lambda idx: idx[0])
        return {f"cluster-{p}": idx for p, idx in enumerate(ordered)}


class Imbalanced(Partitioner):
    """The paper's imbalanced split (Appendix B): a seeded shuffle dealt into ``n_partitions`` parts
    of sizes n_i = n * beta^i / sum_j beta^j, so smaller ``beta`` is more skewed (0.6 gives 60
    examples as [25, 15, 9, 6, 3, 2]); every part keeps at least one example."""

    def __init__(self, beta: float = 0.6):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta <= 1:
            raise ValueError(f"beta must be a number in (0, 1]; got {beta!r}")
        self.beta = float(beta)

    def sizes(self, n: int, parts: int) -> list[int]:
        weights = [self.beta ** i for i in range(1, parts + 1)]
        exact = [n * w / sum(weights) for w in weights]
        sizes = [max(1, int(x)) for x in exact]
        # Largest remainders first, then trim the biggest parts, so the sizes add up to n.
        for i in sorted(range(parts), key=lambda i: int(exact[i]) - exact[i]):
            if sum(sizes) >= n:
                break
            sizes[i] += 1
        while sum(sizes) > n:
            sizes[sizes.index(max(sizes))] -= 1
        return sizes

    def split(self, examples, *, n_partitions, seed, embed):
        n = n_partitions or default_partition_count(len(examples))
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        groups, start = {}, 0
        for p, size in enumerate(self.sizes(len(examples), n)):
            groups[f"imbalanced-{p}"] = sorted(order[start:start + size])
            start += size
        return groups


class ByDifficulty(Partitioner):
    """The paper's difficulty split (Table 5): run the unoptimized program once on every example,
    rank the examples from easy to hard (score, then trace length: program steps, then characters
    of output), and cut the ranking into ``n_partitions`` parts of comparable difficulty.

    The rollout's calls are counted with the task model's, and they are not wasted: each
    partition's first evaluation reuses them."""

    needs_rollout = True

    def split(self, examples, *, n_partitions, seed, embed, rollout=None):
        if rollout is None:
            raise ValueError("ByDifficulty needs a rollout of the program; use it through FGO(partition_by=...)")
        n = n_partitions or default_partition_count(len(examples))
        runs = rollout()
        hardness = {run.key: (-run.score, len(run.steps), sum(len(str(v)) for step in run.steps
                                                               for v in step.outputs.values()))
                    for run in runs}
        order = sorted(range(len(examples)), key=lambda i: (hardness[i], i))
        return {f"difficulty-{p}": sorted(order[p * len(order) // n:(p + 1) * len(order) // n]) for p in range(n)}


def default_partition_count(n_examples: int) -> int:
    """About sqrt(n) partitions, between 2 and 8 (the paper used 4 to 8 on 36 to 60 examples)."""
    return max(1, min(8, round(math.sqrt(n_examples)), n_examples // 2 or 1))


def resolve_partitioner(partition_by) -> Partitioner:
    if partition_by is None:
        return ByEmbedding()
    if isinstance(partition_by, Partitioner):
        return partition_by
    if partition_by == "random":
        return RandomSplit()
    if partition_by == "difficulty":
        return ByDifficulty()
    if isinstance(partition_by, str) or callable(partition_by):
        return ByKey(partition_by)
    raise TypeError(
        "partition_by must be None (automatic), 'random', 'difficulty', a field name, a callable example -> key, "
        f"or a dspy_fgo.Partitioner; got {type(partition_by).__name__}"
    )


def pool_small(groups: dict[str, list[int]], min_size: int) -> tuple[list[Partition], list[str]]:
    """Pool partitions under ``min_size`` together (and into the smallest big one if still small).

    Returns the partitions and a note per pooling, for the report.
    """
    big = {name: idx for name, idx in groups.items() if len(idx) >= min_size}
    small = {name: idx for name, idx in groups.items() if len(idx) < min_size}
    notes = []
    if small:
        pooled_name = "+".join(small)
        pooled = sorted(i for idx in small.values() for i in idx)
        if len(pooled) < min_size and big:
            target = min(big, key=lambda name: (len(big[name]), name))
            notes.append(f"partitions {sorted(small)} had fewer than {min_size} examples; pooled into {target!r}")
            big[f"{target}+{pooled_name}"] = sorted(big.pop(target) + pooled)
        else:
            notes.append(f"partitions {sorted(small)} had fewer than {min_size} examples; pooled as {pooled_name!r}")
            big[pooled_name] = pooled
    return [Partition(name, idx) for name, idx in sorted(big.items(), key=lambda kv: kv[1][0])], notes


def clusters_of(vectors: np.ndarray, k: int, method: str, seed: int) -> list[list[int]]:
    """Split the rows of ``vectors`` into ``k`` non-empty groups with the chosen method."""
    from sklearn.cluster import BisectingKMeans, SpectralClustering

    n = len(vectors)
    k = max(1, min(k, n))
    if k == 1:
        return [list(range(n))]
    if len(np.unique(np.round(vectors, 6), axis=0)) < k:
        # Fewer distinct points than clusters (duplicate candidates): deal them out evenly, so the
        # recursion always shrinks.
        return [list(range(n))[p::k] for p in range(k)]
    if method == "kmeans":
        labels = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(vectors)
    elif method == "bisecting":
        labels = BisectingKMeans(n_clusters=k, random_state=seed).fit_predict(vectors)
    elif method == "spectral":
        affinity = np.clip(vectors @ vectors.T, 0.0, None) + 1e-6  # cosine similarity of unit vectors
        labels = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed).fit_predict(affinity)
    else:
        raise ValueError(f"unknown clustering {method!r}")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    ordered = sorted(groups.values(), key=lambda idx: idx[0])
    return ordered if len(ordered) > 1 else [list(range(n))[p::k] for p in range(k)]


def assign_checks(partitioner: Partitioner, partitions: Sequence[Partition], trainset: Sequence[dspy.Example],
                  valset: Sequence[dspy.Example], embedder: Callable | None = None) -> list[list[int]]:
    """For each partition, the positions of the valset examples of its kind: the same key when
    partitioning by key, else (and for a key no partition has) the partition the returned program
    routes the example to: the highest cosine to the centroid of its training inputs, in the
    routing space (``dspy_fgo.divide.space``). These are the examples a partition's changes are judged on,
    so none of them is ever shown to its optimizer."""
    owner = {i: p for p, part in enumerate(partitions) for i in part.indices}
    found: list[int | None] = [None] * len(valset)
    if isinstance(partitioner, ByKey):
        by_key = {}
        for i, example in enumerate(trainset):
            by_key.setdefault(str(partitioner._value(example, i)), owner[i])
        for j, example in enumerate(valset):
            try:
                found[j] = by_key.get(str(partitioner._value(example, j)))
            except (ValueError, KeyError):
                found[j] = None
    missing = [j for j, p in enumerate(found) if p is None]
    if missing:
        space = Space.fit([input_text(ex) for ex in trainset], embedder)
        train = space([input_text(ex) for ex in trainset])
        centroids = unit_centroids([train[part.indices] for part in partitions])
        nearest = (space([input_text(valset[j]) for j in missing]) @ centroids.T).argmax(axis=1)
        for j, p in zip(missing, nearest):
            found[j] = int(p)
    checks: list[list[int]] = [[] for _ in partitions]
    for j, p in enumerate(found):
        checks[p].append(j)
    return checks


def input_text(example) -> str:
    """An example's input fields (a ``dspy.Example`` or a call's keyword arguments) as one text, in
    field-name order, so compile time and inference agree; "" when no input fields are declared."""
    if isinstance(example, dspy.Example):
        try:
            example = example.inputs()
        except ValueError:  # no input keys declared: nothing to tell the inputs apart by
            return ""
    return " ".join(str(example[k]) for k in sorted(example.keys()) if example[k] is not None)

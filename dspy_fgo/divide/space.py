"""The space inputs are compared in, for routing, for assigning held-out examples to partitions and
for nearest demos: unit vectors from a TF-IDF fitted on the trainset's inputs (its state is plain
JSON, so a saved program needs no pickle), or from a user's embedder (a callable or
``dspy.Embedder``, given again at load)."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

logger = logging.getLogger("dspy_fgo")

MAX_FEATURES = 2048  # the offline vocabulary: bounded however large the trainset


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
        """The space of ``texts``: the user's embedder if it embeds them, else (with a warning) the
        offline TF-IDF, so a failing embedding service never stops a compile."""
        texts = list(texts)
        if embedder is not None:
            space = cls(embedder)
            try:
                space(texts)
                return space
            except Exception as exc:
                logger.warning("embedder failed (%s: %s); routing with the offline TF-IDF space",
                               type(exc).__name__, exc)
        space = cls()
        space.tfidf = _tfidf(max_features=MAX_FEATURES).fit(texts)
        return space

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.embedder is not None:
            vectors = np.asarray(self.embedder(texts), dtype=float)
            if vectors.ndim != 2 or len(vectors) != len(texts) or not np.isfinite(vectors).all():
                raise ValueError(f"the embedder must return a finite {len(texts)} x d array; got shape {vectors.shape}")
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


def unit_centroids(vectors_by_group: Sequence[np.ndarray]) -> np.ndarray:
    """One unit-length centroid per group of vectors: an input is nearest to the group whose
    centroid has the highest cosine with it. The router and the assignment of held-out examples
    both use this, so a check judged for a partition is the input the returned program sends there."""
    return normalize(np.stack([np.asarray(v).mean(axis=0) for v in vectors_by_group]))


def _tfidf(**kwargs) -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), **kwargs)

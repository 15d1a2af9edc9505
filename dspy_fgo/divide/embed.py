"""Text embeddings for clustering: a user's model, or an offline default that needs no download.

The offline default is TF-IDF followed by truncated SVD (latent semantic analysis), fitted on the
texts it is asked to embed. It only compares texts within one call, which is all clustering
needs, and it runs anywhere scikit-learn does.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from dspy_fgo.run.accounting import Counters, RoleMeter

logger = logging.getLogger("dspy_fgo")


def offline_embed(texts: Sequence[str], dims: int = 64, seed: int = 0) -> np.ndarray:
    """Unit-length LSA vectors for ``texts`` (deterministic for a given seed)."""
    texts = [t if t.strip() else "(empty)" for t in texts]
    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1).fit_transform(texts)
    n_components = min(dims, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
    if n_components < 2:
        return normalize(tfidf.toarray())
    with warnings.catch_warnings():  # identical texts make SVD's explained-variance ratio 0/0: harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        reduced = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(tfidf)
    return normalize(reduced)


class Embedding:
    """Calls the user's embedder (``dspy.Embedder`` or any ``texts -> vectors`` callable), counting
    its calls, and falls back to the offline embedder with a warning when it fails."""

    def __init__(self, embedder: Callable | None, meter: RoleMeter, counters: Counters, seed: int = 0):
        self.embedder = embedder
        self.meter = meter
        self.counters = counters
        self.seed = seed

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.embedder is not None:
            try:
                vectors = np.asarray(self.embedder(texts), dtype=np.float32)
                if vectors.ndim != 2 or len(vectors) != len(texts) or not np.isfinite(vectors).all():
                    raise ValueError(f"expected a finite {len(texts)} x d array, got shape {vectors.shape}")
                self.meter.count_calls(1)
                return normalize(vectors)
            except Exception as exc:
                self.meter.count_calls(1, errors=1)
                self.counters.add("embedder_fallbacks")
                logger.warning("embedder failed (%s: %s); using the offline TF-IDF embedder", type(exc).__name__, exc)
        self.meter.count_calls(1)
        return offline_embed(texts, seed=self.seed)

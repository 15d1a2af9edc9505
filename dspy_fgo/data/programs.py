"""The benchmark programs' one shape: a single predictor, plain or with reasoning."""

from __future__ import annotations

import dspy


def single_step(signature: dspy.Signature, kind: str = "predict") -> dspy.Module:
    """``kind``: ``"predict"`` for ``dspy.Predict``, ``"cot"`` / ``"chain_of_thought"`` for ``dspy.ChainOfThought``."""
    if kind == "predict":
        return dspy.Predict(signature)
    if kind in ("cot", "chain_of_thought"):
        return dspy.ChainOfThought(signature)
    raise ValueError(f"unknown kind {kind!r}; use 'predict' or 'cot'")

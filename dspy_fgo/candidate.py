"""A candidate is the text an optimizer may change in a program.

It is a plain ``dict[str, str]`` from each predictor's name (as ``program.named_predictors()``
spells it) to its instruction, the same shape GEPA uses. Every FGO stage speaks candidates, so the
stages stay independent of DSPy's module tree.
"""

from __future__ import annotations

import hashlib
import json

import dspy

Candidate = dict[str, str]


def read_candidate(program: dspy.Module) -> Candidate:
    """The instructions of every predictor in ``program``."""
    return {name: predictor.signature.instructions for name, predictor in program.named_predictors()}


def apply_candidate(program: dspy.Module, candidate: Candidate) -> dspy.Module:
    """A deep copy of ``program`` with the candidate's instructions; ``program`` is untouched."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if name in candidate:
            predictor.signature = predictor.signature.with_instructions(candidate[name])
    return copy


def candidate_key(candidate: Candidate) -> str:
    """A short stable fingerprint, used to cache evaluations of the same candidate."""
    blob = json.dumps(candidate, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def candidate_text(candidate: Candidate) -> str:
    """The candidate as one text, for embedding and for showing to people."""
    if len(candidate) == 1:
        return next(iter(candidate.values()))
    return "\n\n".join(f"[{name}]\n{text}" for name, text in sorted(candidate.items()))


def describe_predictor(program: dspy.Module, name: str) -> str:
    """A predictor's name and its input/output fields, so the optimizer LM knows what the step does."""
    predictor = dict(program.named_predictors())[name]
    signature = predictor.signature
    inputs = ", ".join(signature.input_fields)
    outputs = ", ".join(signature.output_fields)
    return f"step `{name}`: inputs ({inputs}) -> outputs ({outputs})"

"""A candidate is the text an optimizer may change in a program.

It is a plain ``dict[str, str]`` from each predictor's name (as ``program.named_predictors()``
spells it) to its instruction, the same shape GEPA uses; with ``tools=True`` it also holds the
descriptions of an agent's tools (see ``dspy_fgo.tools``). Every FGO stage speaks candidates, so the
stages stay independent of DSPy's module tree. Its demos name the example each was made from, and
wherever a score is taken an example runs without them (``without_own_demos``).
"""

from __future__ import annotations

import hashlib
import json

import dspy

from dspy_fgo.tools import agents, apply_tools, describe_tool, is_tool_key, read_tools, strip_tool_lines

Candidate = dict[str, str]

# Few-shot demos ride in the same dict, as JSON under "<predictor>::demos", so an inner optimizer
# that picks demos (MIPROv2, BootstrapFewShot) yields a candidate like any other. The optimizer
# LM only ever rewrites or merges the text keys.
DEMOS = "::demos"


def is_text_key(key: str) -> bool:
    return not key.endswith(DEMOS)


def read_candidate(program: dspy.Module, tools: bool = False) -> Candidate:
    """The instructions of every predictor in ``program``, and its demos where it has any.

    With ``tools``, also every tool's description, and agents' instructions without their tool lines.
    """
    candidate = {}
    react = {agent.react: agent for _, agent in agents(program)} if tools else {}
    for name, predictor in program.named_predictors():
        candidate[name] = predictor.signature.instructions
        if predictor in react:
            candidate[name] = strip_tool_lines(candidate[name], react[predictor])
        if predictor.demos:
            demos = [dict(d.toDict() if hasattr(d, "toDict") else d) for d in predictor.demos]
            candidate[name + DEMOS] = json.dumps(demos, ensure_ascii=False, sort_keys=True, default=str)
    if tools:
        candidate.update(read_tools(program))
    return candidate


def apply_candidate(program: dspy.Module, candidate: Candidate) -> dspy.Module:
    """A deep copy of ``program`` with the candidate's instructions (and demos); ``program`` is untouched."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if name in candidate:
            predictor.signature = predictor.signature.with_instructions(candidate[name])
        if name + DEMOS in candidate:
            predictor.demos = [dspy.Example(**d) for d in json.loads(candidate[name + DEMOS])]
    apply_tools(copy, candidate)
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
    """A predictor's name and its input/output fields (or what a tool text is), for the optimizer LM."""
    if is_tool_key(name):
        return describe_tool(name)
    predictor = dict(program.named_predictors())[name]
    signature = predictor.signature
    inputs = ", ".join(signature.input_fields)
    outputs = ", ".join(signature.output_fields)
    return f"step `{name}`: inputs ({inputs}) -> outputs ({outputs})"


def prompt_size(candidate: Candidate) -> int:
    """Characters the candidate adds to every call of the program: its instructions and demos."""
    return sum(len(text) for text in candidate.values())


def without_own_demos(candidate: Candidate, example: dspy.Example) -> Candidate:
    """``candidate`` without the demos made from ``example``, so that running ``example`` cannot copy
    its answer from the prompt (``BootstrapFewShot`` leaves the example out the same way). A demo is
    the example's when it has one of the example's input fields and agrees on every such field."""
    inputs = plain_values(example.inputs().toDict())
    kept = {}
    for key, value in candidate.items():
        if is_text_key(key):
            continue
        demos = json.loads(value)
        own = [d for d in demos if is_own_demo(d, inputs)]
        if own:
            kept[key] = json.dumps([d for d in demos if d not in own], ensure_ascii=False, sort_keys=True, default=str)
    return {**candidate, **kept}


def is_own_demo(demo: dict, inputs: dict) -> bool:
    """Whether ``demo`` was made from the example with these ``inputs``: it names them as its
    source (``SOURCE``: a later predictor's demo shares no field with the program's inputs), or it
    has one of their fields and agrees on every one it has (a demo from elsewhere, or a duplicate)."""
    if demo.get(SOURCE) == source_of(inputs):
        return True
    return any(f in demo for f in inputs) and all(demo[f] == inputs[f] for f in inputs if f in demo)


# The example a demo was made from, as a fingerprint of its inputs. Adapters format only the
# signature's fields, so the key never reaches a prompt.
SOURCE = "fgo_source"


def source_of(example: dspy.Example | dict) -> str:
    """A short fingerprint of an example's inputs (an Example, or the inputs as a dict)."""
    inputs = example.inputs().toDict() if isinstance(example, dspy.Example) else example
    blob = json.dumps(plain_values(inputs), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def plain_values(values: dict) -> dict:
    """JSON-safe field values (a tool's args dict stays a dict; anything else unusual becomes text)."""
    return json.loads(json.dumps(dict(values), ensure_ascii=False, default=str))

"""What the optimizer LM is shown: prompt budgets, and runs formatted to fit them.

Every optimizer prompt is built to fit a character budget derived from the optimizer model's
context window; runs and texts are clipped to their share of it, and the report counts how often
that happened. That is what keeps FGO's prompts bounded however large the trainset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import dspy

from dspy_fgo.candidate import Candidate, is_text_key
from dspy_fgo.run.accounting import Counters
from dspy_fgo.run.runtime import Trajectory

CHARS_PER_TOKEN = 3  # conservative: real tokenizers give ~4 chars per token on English text
PROMPT_OVERHEAD_TOKENS = 600  # the signature's own instructions and the adapter's framing


@dataclass
class Budget:
    """How much text the optimizer LM may be shown in one call."""

    max_prompt_tokens: int = 6000
    max_run_chars: int = 1500  # one run (trajectory) as shown to the optimizer
    max_instruction_chars: int = 4000

    def instruction_limit(self, current: str = "") -> int:
        """How long a rewrite of ``current`` may be: ``max_instruction_chars``, or half as long again
        as ``current`` where that is longer (an agent's instruction carries its tool list, which a
        rewrite must keep)."""
        return max(self.max_instruction_chars, int(1.5 * len(current)))

    @property
    def chars(self) -> int:
        return max(1000, (self.max_prompt_tokens - PROMPT_OVERHEAD_TOKENS) * CHARS_PER_TOKEN)


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to ``limit`` characters, keeping its head and tail."""
    text = str(text)
    if len(text) <= limit:
        return text
    half = max(0, limit // 2 - 10)
    return f"{text[:half]} [... {len(text) - 2 * half} chars cut ...] {text[-half:]}"


def format_run(trajectory: Trajectory, limit: int, counters: Counters | None = None) -> str:
    """A run as the optimizer reads it: inputs, each step's outputs, the gold labels, the score."""
    example = trajectory.example
    inputs = example.inputs().toDict()
    labels = answered_labels(example.labels().toDict(), trajectory)
    lines = [f"Input: {_fields(inputs)}"]
    steps = trajectory.steps
    agent = getattr(trajectory.prediction, "trajectory", None)
    if isinstance(agent, dict) and agent:
        # A ReAct-style agent: show its own step log (thoughts, tool calls, observations) once,
        # rather than every call of its loop predictor, whose inputs repeat the log so far.
        lines.append("Agent steps:")
        lines += agent_log(agent, int(limit * 0.7), counters)
        steps = [step for step in steps if "trajectory" not in step.inputs]
    for step in steps:
        lines.append(f"Step `{step.predictor}` output: {_fields(step.outputs)}")
    if trajectory.error:
        lines.append(f"Error: {trajectory.error}")
    lines.append(f"Expected: {_fields(labels)}")
    lines.append(f"Score: {trajectory.score:.2f}")
    if trajectory.feedback:
        lines.append(f"Metric feedback: {trajectory.feedback}")
    return clip("\n".join(lines), limit)


def answered_labels(labels: dict, trajectory: Trajectory) -> dict:
    """The gold labels for the program's own outputs; all labels when none match.

    Metadata beside the answer (an id, a task name, alternative targets) is left out: the 1.5B
    optimizer copied such a line ("answer: b; task: hyperbaton; ...; id=1537") as an instruction.
    """
    outputs = set(trajectory.prediction.keys()) if hasattr(trajectory.prediction, "keys") else set()
    for step in trajectory.steps:
        outputs |= set(step.outputs)
    return {k: v for k, v in labels.items() if k in outputs} or labels


_AGENT_KEY = re.compile(r"^(thought|tool_name|tool_args|observation)_(\d+)$")


def agent_log(agent: dict, limit: int, counters: Counters | None = None) -> list[str]:
    """An agent's steps, one line each, within ``limit`` characters.

    When the whole log does not fit, the steps that matter stay: the first (the plan), the last
    two (where the answer was decided), and every step whose tool failed, with its neighbours;
    each run of the others becomes one line naming the tools it called. Observations are clipped
    to share the room. ``counters`` gets how many runs were shortened and how many steps were cut.
    """
    steps: dict[int, dict] = {}
    for key, value in agent.items():
        match = _AGENT_KEY.match(key)
        if match:
            steps.setdefault(int(match[2]), {})[match[1]] = value

    def line(i: int, room: int) -> str:
        step = steps[i]
        call = f"{step.get('tool_name', '?')}({_fields(step.get('tool_args') or {})})"
        return clip(f"  step {i}: thought: {step.get('thought', '')} | call: {call} | "
                    f"observation: {step.get('observation', '')}", room)

    order = sorted(steps)
    full = [line(i, 10 ** 9) for i in order]
    if sum(len(x) + 1 for x in full) <= limit:
        return full
    failed = {i for i in order if "error" in str(steps[i].get("observation", ""))[:80].lower()}
    keep = {order[0], *order[-2:]} | {j for i in failed for j in (i - 1, i, i + 1)}
    kept = [i for i in order if i in keep]
    room = max(120, limit // max(1, len(kept)) - 60)
    lines, skipped = [], []
    for i in order + [None]:
        if i is not None and i not in keep:
            skipped.append(i)
            continue
        if skipped:
            tools = ", ".join(str(steps[j].get("tool_name", "?")) for j in skipped)
            lines.append(f"  [steps {skipped[0]}-{skipped[-1]} cut to fit: they called {tools}]")
            skipped = []
        if i is not None:
            lines.append(line(i, room))
    if counters is not None:
        counters.add("agent_runs_shortened")
        counters.add("agent_steps_cut", len(order) - len(kept))
    return lines


def _fields(values: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}: {v}" for k, v in values.items())


def instructions_text(candidate: Candidate) -> str:
    return "\n".join(f"[{name}] {text}" for name, text in candidate.items() if is_text_key(name))


DEFAULT_CONTEXT_WINDOW = 8192  # when neither the user nor LiteLLM knows the model's window


def context_window(lm: dspy.BaseLM) -> int:
    """The model's input window in tokens, from LiteLLM's model info, else a safe default."""
    try:
        import litellm

        litellm.suppress_debug_info = True  # an unknown model is expected here, not worth a banner
        info = litellm.get_model_info(lm.model)
        return int(info.get("max_input_tokens") or info.get("max_tokens") or DEFAULT_CONTEXT_WINDOW)
    except Exception:
        return DEFAULT_CONTEXT_WINDOW


def budget_for(lm: dspy.BaseLM, max_prompt_tokens: int | None) -> Budget:
    """The prompt budget for ``lm``: the user's setting, or its window less room for the answer."""
    if max_prompt_tokens is None:
        answer_room = int(getattr(lm, "kwargs", {}).get("max_tokens") or 1000)
        max_prompt_tokens = context_window(lm) - answer_room
    return Budget(max_prompt_tokens=max_prompt_tokens)


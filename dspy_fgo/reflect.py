"""Algorithm 1 of the paper as three steps: explore, critique, rewrite.

FGO runs it on each partition; the baselines (All-at-once, Batch-wise, Bootstrapping) run the same
steps on other slices of the trainset, so there is one implementation of each step.

Every optimizer prompt is built to fit a character budget derived from the optimizer model's
context window: runs are clipped and, past the budget, dropped (failures are kept first), and the
report counts how often that happened. That is what keeps FGO's prompts bounded however large the
trainset.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import dspy

from dspy_fgo.accounting import Counters
from dspy_fgo.candidate import Candidate, describe_predictor, is_text_key
from dspy_fgo.runtime import Runtime, Trajectory, mean_score
from dspy_fgo.signatures import CritiqueRun, CritiqueRuns, RewriteInstruction

CHARS_PER_TOKEN = 3  # conservative: real tokenizers give ~4 chars per token on English text
PROMPT_OVERHEAD_TOKENS = 600  # the signature's own instructions and the adapter's framing
CRITIQUE_MAX_TOKENS = 300  # a critique is a few sentences; a cap keeps a rambling model from stalling a run
COPY_MIN_WORDS = 6  # a rewrite quoting this many words of one example's inputs is about that example


@dataclass
class Budget:
    """How much text the optimizer LM may be shown in one call."""

    max_prompt_tokens: int = 6000
    max_run_chars: int = 1500  # one run (trajectory) as shown to the optimizer
    max_instruction_chars: int = 4000

    @property
    def chars(self) -> int:
        return max(1000, (self.max_prompt_tokens - PROMPT_OVERHEAD_TOKENS) * CHARS_PER_TOKEN)


@dataclass
class EpochRecord:
    epoch: int
    score: float
    candidate: Candidate
    critiques: int = 0


@dataclass
class ReflectResult:
    candidate: Candidate  # the best candidate seen
    score: float  # its score on the examples it was optimized on
    baseline_score: float  # the starting candidate's score there
    history: list[EpochRecord] = field(default_factory=list)


def result_to_dict(result: ReflectResult) -> dict:
    return asdict(result)


def result_from_dict(data: dict) -> ReflectResult:
    history = [EpochRecord(**h) for h in data.get("history", [])]
    return ReflectResult(candidate=data["candidate"], score=data["score"], baseline_score=data["baseline_score"],
                         history=history)


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


def pick_for_critique(trajectories: Sequence[Trajectory], successes: int) -> list[Trajectory]:
    """All failures, and the first few successes so the optimizer also learns what works."""
    failures = [t for t in trajectories if t.score < 1.0]
    wins = [t for t in trajectories if t.score >= 1.0][:successes]
    return failures + wins


def critique(
    rt: Runtime, candidate: Candidate, trajectories: Sequence[Trajectory], budget: Budget, counters: Counters
) -> dict[Any, str]:
    """One optimizer call per run (the paper's evaluator); returns critiques by example key."""
    shown = instructions_text(candidate)
    if len(shown) > budget.chars // 2:
        counters.add("prompts_clipped")
        shown = clip(shown, budget.chars // 2)
    run_limit = min(budget.max_run_chars * 2, budget.chars - len(shown))

    def one(trajectory: Trajectory):
        answer = rt.ask(CritiqueRun, max_tokens=CRITIQUE_MAX_TOKENS, program_instructions=shown,
                        run=format_run(trajectory, run_limit, counters))
        return trajectory.key, (answer.critique.strip() if answer is not None else "")

    critiques = dict(rt.map(one, trajectories))
    counters.add("critique_calls_failed", sum(1 for c in critiques.values() if not c))
    return {k: v for k, v in critiques.items() if v}


def critique_batch(
    rt: Runtime, candidate: Candidate, trajectories: Sequence[Trajectory], budget: Budget, counters: Counters
) -> str:
    """One optimizer call over all the runs (fitted to the budget): fewer calls than one per run."""
    shown = clip(instructions_text(candidate), budget.chars // 4)
    runs = runs_digest(trajectories, {}, budget.chars - len(shown), budget, counters)
    answer = rt.ask(CritiqueRuns, max_tokens=2 * CRITIQUE_MAX_TOKENS, program_instructions=shown, runs=runs)
    if answer is None or not answer.critique.strip():
        counters.add("critique_calls_failed")
        return ""
    return answer.critique.strip()


def runs_digest(
    trajectories: Sequence[Trajectory], critiques: dict[Any, str], limit: int, budget: Budget, counters: Counters
) -> str:
    """Runs and critiques in one text that fits ``limit`` characters; failures first."""
    ordered = sorted(trajectories, key=lambda t: (t.score >= 1.0, t.key not in critiques))
    blocks, used = [], 0
    for i, trajectory in enumerate(ordered):
        block = format_run(trajectory, budget.max_run_chars, counters)
        if trajectory.key in critiques:
            block += "\nCritique: " + clip(critiques[trajectory.key], budget.max_run_chars // 2)
        block = f"### Run {i + 1}\n{block}\n"
        if used + len(block) > limit:
            counters.add("runs_dropped_from_prompts", len(ordered) - i)
            break
        blocks.append(block)
        used += len(block)
    return "\n".join(blocks) if blocks else "(no runs)"


def rewrite(
    rt: Runtime,
    program: dspy.Module,
    candidate: Candidate,
    score: float,
    trajectories: Sequence[Trajectory],
    critiques: dict[Any, str],
    history: Sequence[EpochRecord],
    budget: Budget,
    counters: Counters,
    overall: str = "",
    examples: Sequence[dspy.Example] = (),
) -> Candidate:
    """Ask the optimizer for a new instruction per predictor; keep the old one on a bad answer,
    including one that copies text particular to some of ``examples`` (see ``copies_examples``)."""

    def one(name: str) -> tuple[str, str]:
        current = clip(candidate[name], budget.max_instruction_chars)
        past = "\n".join(
            f"- score {r.score:.2f}: {clip(r.candidate.get(name, ''), 600)}" for r in history[-4:-1]
        ) or "(none)"
        lessons = f"Critique of these runs:\n{clip(overall, budget.chars // 4)}\n\n" if overall else ""
        room = budget.chars - len(current) - len(past) - len(lessons) - 200
        step = describe_predictor(program, name)
        answer = rt.ask(
            RewriteInstruction,
            step=step,
            current_instruction=f"(score {score:.2f})\n{current}",
            past_instructions=past,
            runs_and_critiques=lessons + runs_digest(trajectories, critiques, room, budget, counters),
        )
        proposal = clean_instruction(answer.new_instruction if answer is not None else None, budget, step)
        if proposal is None:
            counters.add("proposals_rejected")
            return name, candidate[name]
        if copies_examples(proposal, candidate[name], examples):
            counters.add("proposals_copying_examples")
            return name, candidate[name]
        return name, proposal

    return {**candidate, **dict(rt.map(one, [k for k in candidate if is_text_key(k)]))}


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copies_examples(proposal: str, current: str, examples: Sequence[dspy.Example],
                    min_words: int = COPY_MIN_WORDS) -> bool:
    """True when ``proposal`` quotes ``min_words`` words in a row from the inputs of some, but not
    all, of ``examples`` (of the only one, if there is one) that ``current`` does not already hold.

    Text every example shares is the task's own wording and may be quoted; text found in only some
    examples is about those examples (a question's names, numbers, word lists), and an instruction
    that carries it has memorized its partition rather than learned the task. The 1.5B optimizer
    did exactly that on BBH (benchmarks/README.md), and a merge would spread it to every task.
    """
    if not examples:
        return False
    fresh = _ngrams(proposal, min_words) - _ngrams(current, min_words)
    if not fresh:
        return False
    grams = [_ngrams(_input_text(ex), min_words) for ex in examples]
    for gram in fresh:
        holders = sum(gram in g for g in grams)
        if holders and (holders < len(grams) or len(grams) == 1):
            return True
    return False


def _input_text(example: dspy.Example) -> str:
    try:
        return " ".join(str(v) for v in example.inputs().values())
    except ValueError:  # no input keys declared: nothing to tell the inputs apart by
        return ""


_FENCE = re.compile(r"^```[a-zA-Z]*\n?|\n?```$")
_SCORE_LINE = re.compile(r"^\(score [0-9.]+\)\s*")  # our prompt shows "(score 0.50)" above the instruction


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def clean_instruction(text: str | None, budget: Budget, step: str = "") -> str | None:
    """The proposed instruction, or None when it is empty, a leak of the prompt (its framing, or
    ``step``, our description of the step being rewritten), or runaway."""
    if not text:
        return None
    text = _FENCE.sub("", str(text).strip()).strip().strip('"').strip()
    text = _SCORE_LINE.sub("", text)  # a small model echoes the score line; the instruction is what follows
    if len(text) < 8 or len(text) > budget.max_instruction_chars:
        return None
    if any(mark in text for mark in ("[[ ##", "### Run ", "Critique:", "step `")):
        # The model copied our prompt's framing, or wrote about the instruction ("To improve the
        # instruction for step `self`, we should ...", seen from the 1.5B) instead of writing one.
        return None
    if step and _normal(step)[:60] in _normal(text):
        return None  # it restated our description of the step (seen from the 1.5B on tool texts)
    return text


def optimize_module(
    rt: Runtime,
    program: dspy.Module,
    start: Candidate,
    items: Sequence[tuple[Any, dspy.Example]],
    *,
    epochs: int,
    budget: Budget,
    counters: Counters,
    critique_successes: int = 1,
    critique_mode: str = "each",
) -> ReflectResult:
    """Algorithm 1: explore, critique, rewrite, for ``epochs`` rewrites; keep the best candidate.

    The last rewrite is evaluated too, so ``epochs`` rewrites take ``epochs + 1`` explorations.
    A perfect score stops early: there is nothing left to learn on these examples.
    """
    current, history = dict(start), []
    for epoch in range(epochs + 1):
        trajectories = rt.evaluate(current, items)
        record = EpochRecord(epoch=epoch, score=mean_score(trajectories), candidate=current)
        history.append(record)
        rt.progress.note(epoch=f"{epoch}/{epochs}", epoch_score=f"{record.score:.2f}")
        if epoch == epochs or record.score >= 1.0 or rt.exhausted():
            break
        current = reflect_step(rt, program, current, trajectories, history, budget, counters, critique_successes,
                               critique_mode)
    best = max(history, key=lambda r: r.score)  # max keeps the earliest on ties: prefer fewer changes
    return ReflectResult(candidate=best.candidate, score=best.score, baseline_score=history[0].score, history=history)


def reflect_step(
    rt: Runtime,
    program: dspy.Module,
    current: Candidate,
    trajectories: Sequence[Trajectory],
    history: list[EpochRecord],
    budget: Budget,
    counters: Counters,
    critique_successes: int,
    critique_mode: str = "each",
) -> Candidate:
    """Critique the runs and rewrite the candidate from them: one update of Algorithm 1.

    ``critique_mode`` "each" is the paper's evaluator, one call per run; "batch" is one call for
    all the runs. ``history[-1]`` is the record of ``current``; its critique count is filled in.
    """
    chosen = pick_for_critique(trajectories, critique_successes)
    if critique_mode == "batch":
        overall, critiques = critique_batch(rt, current, chosen, budget, counters), {}
        history[-1].critiques = int(bool(overall))
    else:
        overall, critiques = "", critique(rt, current, chosen, budget, counters)
        history[-1].critiques = len(critiques)
    return rewrite(rt, program, current, history[-1].score, chosen, critiques, history, budget, counters, overall,
                   examples=[t.example for t in trajectories])


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

"""Proposer quality: does FGO learn when its optimizer can write the rule, and stay safe when it cannot?

    python -m benchmarks.proposer_quality                    # the full sweep (a few minutes)
    python -m benchmarks.proposer_quality --quick            # q in {0, 0.5, 1}, 4 partitions (CI-sized)
    python -m benchmarks.proposer_quality --settings '{"epochs": 1}'   # any FGO setting

Scripted models, so the answer is known: this measures the optimizer's selection, not a model.
- The **task model** answers a question of category c right with probability ``--p-rule`` (0.9)
  when the program's instruction states c's rule, ``--p-harm`` (0.05) when it says "Always answer
  UNKNOWN", and ``--p-base`` (0.4) otherwise; the draw is fixed per (question, instruction), so a
  candidate scores the same every time it is run, as a cached real model does.
- The **optimizer** of quality q writes, on each call, the rules of the categories it sees in its
  prompt with probability q, and otherwise "Always answer UNKNOWN." (a harmful text). Its draw is
  fixed per (prompt, rollout), so distinct rollouts are independent asks. Critiques, lessons and
  task descriptions name the categories they were shown, as a real critique would.
The floor is ``p-base`` (no rule learned), the ceiling ``p-rule`` (every rule learned). Each cell
prints and writes test accuracy (on ``--test`` fresh questions per category), optimizer and task
calls; ``results.json``, ``results.md`` and ``accuracy_vs_q.png`` go to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

QS = (0.0, 0.25, 0.5, 0.75, 1.0)
VALSETS = (0, 4, 8, 16)  # valset examples per partition; 0: no valset
PARTITIONS = (4, 8, 16)
HARMFUL = "Always answer UNKNOWN."
_CATEGORY = re.compile(r"\bcat(\d+)\b")


def rule(category: str) -> str:
    return f"For {category} questions, give the {category}-code."


def draw(*parts) -> float:
    """A uniform number in [0, 1) fixed by ``parts``: the same question and instruction, the same answer."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


class ScriptedLM(dspy.BaseLM):
    """A chat LM whose answers come from ``respond(fields, messages, rollout) -> {field: value}``."""

    def __init__(self, model: str, respond):
        super().__init__(model=model, model_type="chat", temperature=0.0, max_tokens=1000, cache=False)
        self.respond, self.calls, self._lock = respond, 0, threading.Lock()

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        with self._lock:
            self.calls += 1
        system = messages[0]["content"]
        block = re.search(r"Your output fields are:(.*?)(?:All interactions|\Z)", system, re.S)
        fields = re.findall(r"\d+\. `(\w+)`", block.group(1)) if block else ["answer"]
        values = self.respond(fields, messages, kwargs.get("rollout_id"))
        content = "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()) + "\n\n[[ ## completed ## ]]"
        text = sum(len(m["content"]) for m in messages)
        usage = {"prompt_tokens": text // 4, "completion_tokens": len(content) // 4, "total_tokens": 0}
        choice = SimpleNamespace(message=SimpleNamespace(content=content, tool_calls=None), finish_reason="stop",
                                 logprobs=None)
        return SimpleNamespace(choices=[choice], usage=usage, model=self.model, cache_hit=False)

    def __deepcopy__(self, memo):
        return self


def question_of(messages: list[dict]) -> str:
    match = re.search(r"\[\[ ## question ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)",
                      messages[-1]["content"], re.S)
    return match.group(1).strip() if match else ""


def task_model(p_rule: float, p_harm: float, p_base: float, seed: int) -> ScriptedLM:
    def respond(fields, messages, rollout):
        instruction = messages[0]["content"]  # the system message: the instruction, not the demos
        question = question_of(messages)
        category, gold = re.match(r"\[(cat\d+)\] .*?answer (\S+)$", question).groups()
        if HARMFUL.lower() in instruction.lower():
            p = p_harm
        elif f"{category}-code" in instruction:
            p = p_rule
        else:
            p = p_base
        text = re.sub(r"\s+", " ", instruction)
        right = draw("task", seed, question, text) < p
        return {f: (gold if right else "UNKNOWN") if f == "answer" else "..." for f in fields}

    return ScriptedLM("scripted/task", respond)


def optimizer_model(q: float, seed: int) -> ScriptedLM:
    def respond(fields, messages, rollout):
        prompt = "\n".join(m["content"] for m in messages[1:])  # what it was shown, not its own instructions
        seen = sorted(set(_CATEGORY.findall(prompt)), key=int)
        named = ", ".join(f"cat{c}" for c in seen) or "these"
        writes_rules = bool(seen) and draw("optimizer", seed, prompt, rollout) < q
        text = " ".join(rule(f"cat{c}") for c in seen) if writes_rules else HARMFUL
        return optimizer_answer(fields, text, f"Questions of {named}: each category has its own answer code.")

    return ScriptedLM("scripted/optimizer", respond)


def optimizer_answer(fields, instruction: str, remark: str) -> dict[str, str]:
    """A scripted optimizer's answer: ``instruction`` for a rewrite or a merge, ``remark`` (naming what
    it was shown, as a real critique would) for critiques, lessons and task descriptions."""
    return {f: instruction if f in ("new_instruction", "merged_instruction")
            else "Shared and specific rules." if f == "analysis" else remark for f in fields}


def make_split(categories: int, per_category: int, start: int, seed: int) -> list:
    """``per_category`` questions of each category; question numbers from ``start`` keep splits apart."""
    return [dspy.Example(question=f"[cat{c}] case {start + i} (seed {seed}): answer c{c}-{start + i}",
                         answer=f"c{c}-{start + i}", category=f"cat{c}").with_inputs("question")
            for c in range(categories) for i in range(per_category)]


def metric(example, prediction, trace=None):
    return float(str(getattr(prediction, "answer", "")).strip() == example.answer)


def test_accuracy(program, testset, task_lm) -> float:
    evaluate = dspy.Evaluate(devset=testset, metric=metric, num_threads=4, display_progress=False)
    with dspy.context(lm=task_lm):
        return evaluate(program).score / 100


def run_cell(q: float, valset_per: int, partitions: int, seed: int, args, settings: dict) -> dict:
    from dspy_fgo import FGO

    trainset = make_split(partitions, args.train, 0, seed)
    valset = make_split(partitions, valset_per, 1000, seed) if valset_per else None
    testset = make_split(partitions, args.test, 2000, seed)
    task = task_model(args.p_rule, args.p_harm, args.p_base, seed)
    optimizer = optimizer_model(q, seed)
    fgo = FGO(metric=metric, task_model=task, prompt_model=optimizer, partition_by="category", seed=seed,
              num_threads=4, progress=False, **settings)
    started = time.perf_counter()
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    seconds = time.perf_counter() - started
    task_calls = task.calls
    events = fgo.report_.events
    return {"q": q, "valset_per_partition": valset_per, "partitions": partitions, "seed": seed,
            "test_accuracy": test_accuracy(program, testset, task), "optimizer_calls": optimizer.calls,
            "task_calls": task_calls, "proposals_made": events.get("proposals_made", 0),
            "proposals_accepted": events.get("proposals_accepted", 0),
            "returned": fgo.report_.selection.get("returned"), "seconds": round(seconds, 2)}


def summarize(rows: list[dict], args) -> tuple[str, list[str]]:
    floor, ceiling = args.p_base, args.p_rule
    gap = ceiling - floor
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["partitions"], row["valset_per_partition"], row["q"]), []).append(row)
    lines = [f"Floor (no rule) {floor:.2f}, ceiling (every rule) {ceiling:.2f}; {args.test} test questions per "
             f"category, {args.train} training questions per category, seeds {args.seeds}.", "",
             "| partitions | valset/partition | q | test accuracy (mean, min-max) | share of gap | "
             "optimizer calls | task calls |", "|---|---|---|---|---|---|---|"]
    misses = []
    for (parts, val, q), group in sorted(cells.items()):
        accs = [r["test_accuracy"] for r in group]
        mean = sum(accs) / len(accs)
        share = (mean - floor) / gap
        calls = sum(r["optimizer_calls"] for r in group) / len(group)
        task = sum(r["task_calls"] for r in group) / len(group)
        lines.append(f"| {parts} | {val or 'none'} | {q:g} | {mean:.3f} ({min(accs):.3f}-{max(accs):.3f}) | "
                     f"{share:+.0%} | {calls:.0f} | {task:.0f} |")
        target = {1.0: 0.9, 0.5: 0.6}.get(q)
        if target is not None and share < target:
            misses.append(f"q={q:g}, {parts} partitions, valset {val or 'none'}: {share:.0%} of the gap "
                          f"(target {target:.0%})")
        # q = 0 may not fall below the floor by more than the noise: a binomial s.e. of the test mean.
        noise = 2 * (floor * (1 - floor) / (args.test * parts * len(group))) ** 0.5
        if q == 0 and mean < floor - noise:
            misses.append(f"q=0, {parts} partitions, valset {val or 'none'}: {mean:.3f}, below the floor "
                          f"{floor:.2f} by more than the noise ({noise:.3f})")
    return "\n".join(lines), misses


def plot(rows: list[dict], args, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install dspy-fgo[benchmarks])")
        return
    parts_list = sorted({r["partitions"] for r in rows})
    fig, axes = plt.subplots(1, len(parts_list), figsize=(4.2 * len(parts_list), 3.6), sharey=True, squeeze=False)
    for ax, parts in zip(axes[0], parts_list):
        for val in sorted({r["valset_per_partition"] for r in rows}):
            group = [r for r in rows if r["partitions"] == parts and r["valset_per_partition"] == val]
            qs = sorted({r["q"] for r in group})
            means = [sum(r["test_accuracy"] for r in group if r["q"] == q) /
                     len([r for r in group if r["q"] == q]) for q in qs]
            ax.plot(qs, means, marker="o", label=f"valset {val or 'none'}/partition")
        ax.axhline(args.p_base, color="grey", ls="--", lw=1)
        ax.axhline(args.p_rule, color="grey", ls=":", lw=1)
        ax.set_title(f"{parts} partitions")
        ax.set_xlabel("proposer quality q (share of asks that write the rule)")
    axes[0][0].set_ylabel("test accuracy (floor --, ceiling ..)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qs", type=float, nargs="+", default=list(QS))
    parser.add_argument("--valsets", type=int, nargs="+", default=list(VALSETS),
                        help="valset examples per partition (0: none)")
    parser.add_argument("--partitions", type=int, nargs="+", default=list(PARTITIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train", type=int, default=12, help="training questions per category")
    parser.add_argument("--test", type=int, default=40, help="test questions per category")
    parser.add_argument("--p-rule", type=float, default=0.9)
    parser.add_argument("--p-harm", type=float, default=0.05)
    parser.add_argument("--p-base", type=float, default=0.4)
    parser.add_argument("--settings", default="{}", help="FGO settings as JSON, e.g. '{\"epochs\": 1}'")
    parser.add_argument("--quick", action="store_true", help="q in {0, 0.5, 1}, 4 partitions, one seed")
    parser.add_argument("--out", default="benchmarks/results/proposer-quality")
    args = parser.parse_args(argv)
    if args.quick:
        args.qs, args.partitions, args.seeds = [0.0, 0.5, 1.0], [4], [0]
    settings = json.loads(args.settings)
    from benchmarks.run import code_version

    version = code_version()  # the code that runs: taken before the sweep, which may outlast a commit
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for parts in args.partitions:
        for val in args.valsets:
            for q in args.qs:
                for seed in args.seeds:
                    row = run_cell(q, val, parts, seed, args, settings)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    table, misses = summarize(rows, args)
    meta = {"code_version": version, "settings": settings, "args": vars(args)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    report = (f"# Proposer quality (scripted models)\n\nCode {meta['code_version']}; FGO settings "
              f"{json.dumps(settings) if settings else 'the defaults'}.\n\n{table}\n\n"
              + ("Targets missed:\n" + "\n".join(f"- {m}" for m in misses) if misses
                 else "Every target met: q = 1 at least 90 % of the gap, q = 0.5 at least 60 %, q = 0 "
                      "not below the floor beyond the noise.") + "\n")
    (out / "results.md").write_text(report)
    plot(rows, args, out / "accuracy_vs_q.png")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

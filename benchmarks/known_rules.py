"""Known rules, real task model: does FGO learn and merge instructions when its proposer can write them?

    python -m benchmarks.known_rules                      # unoptimized, the rules given, FGO at q = 1 and 0.5
    python -m benchmarks.known_rules --cells given        # one kind of cell
    python -m benchmarks.known_rules --model qwen2.5-coder-1.5b --program predict

BBH-15 on the embedded model (ChainOfThought on the 0.5B by default). ``benchmarks/fixtures/
bbh15_rules.json`` holds, per task, an answer rule written once by hand (what a capable optimizer
could write from the task's runs) and a plausible wrong one. The cells:
- ``unoptimized``: "Answer the question.";
- ``given``: that instruction followed by all fifteen good rules: what a perfect merge would return;
- ``fgo-q<q>``: FGO's defaults, partitioned by task, with a scripted optimizer that, on each rewrite
  or merge call, writes the good rules of the tasks its prompt shows with probability q, and
  otherwise their wrong rules (its critiques and task descriptions name the tasks they were shown).
  The task model, and so every score FGO selects on, is real.
Each cell goes to ``OUT/cells/<cell>-seed<s>.json`` with the code version; finished cells are
skipped, and an FGO cell cut short resumes from its checkpoints (``OUT/checkpoints``), so an
interrupted run resumes (the resumed cell's compile time is then its last attempt's). ``OUT/results.md``
is rebuilt from the cells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.proposer_quality import ScriptedLM, draw, optimizer_answer  # noqa: E402

RULES_FILE = Path(__file__).parent / "fixtures" / "bbh15_rules.json"
START = "Answer the question."
CELLS = ("unoptimized", "given", "fgo-q1", "fgo-q0.5")


def load_rules(path: Path = RULES_FILE) -> dict[str, dict[str, str]]:
    return {task: rules for task, rules in json.loads(path.read_text()).items() if not task.startswith("_")}


def given_instruction(rules: dict[str, dict[str, str]]) -> str:
    return " ".join([START, *(rules[task]["good"] for task in sorted(rules))])


def markers(rules: dict, examples) -> dict[str, list[str]]:
    """What shows that a prompt is about a task: its name, its rules, the openings of its questions."""
    found = {task: [task, r["good"], r["wrong"]] for task, r in rules.items()}
    for example in examples:
        found[example.task].append(example.question[:60])
    return found


def scripted_optimizer(q: float, seed: int, rules: dict, examples) -> ScriptedLM:
    """Writes the good rules of the tasks it is shown with probability q per call, else their wrong rules."""
    signs = markers(rules, examples)

    def respond(fields, messages, rollout):
        prompt = "\n".join(m["content"] for m in messages[1:])  # what it was shown, not its own instructions
        seen = sorted(task for task, marks in signs.items() if any(m in prompt for m in marks))
        good = draw("optimizer", seed, prompt, rollout) < q
        text = " ".join([START, *(rules[t]["good" if good else "wrong"] for t in seen)])
        return optimizer_answer(fields, text, f"Questions of {', '.join(seen) or 'these tasks'}: each task needs "
                                              "its own answer rule.")

    return ScriptedLM("scripted/optimizer", respond)


def run_cell(cell: str, seed: int, task, kind: str, task_lm, rules: dict, checkpoint_dir=None) -> dict:
    from dspy_fgo import FGO
    from dspy_fgo.data import bbh_program

    program = bbh_program(kind, given_instruction(rules) if cell == "given" else START)
    started = time.perf_counter()
    extra: dict = {}
    if cell.startswith("fgo-q"):
        q = float(cell.removeprefix("fgo-q"))
        optimizer = scripted_optimizer(q, seed, rules, [*task.train, *task.val])
        fgo = FGO(metric=task.metric, partition_by="task", task_model=task_lm, prompt_model=optimizer, seed=seed,
                  num_threads=2, progress=True, checkpoint_dir=checkpoint_dir)
        program = fgo.compile(program, trainset=task.train, valset=task.val)
        report = fgo.report_
        extra = {"optimizer_calls": optimizer.calls, "task_usage": report.usage["task"],
                 "events": report.events, "selection": report.selection}
    compile_s = time.perf_counter() - started
    with dspy.context(lm=task_lm):
        evaluation = dspy.Evaluate(devset=task.test, metric=task.metric, num_threads=2, display_progress=False,
                                   max_errors=len(task.test))(program)
    per_task: dict[str, list[float]] = {}
    for example, _, score in evaluation.results:
        per_task.setdefault(example.task, []).append(float(score))
    return {"cell": cell, "seed": seed, "test_accuracy": evaluation.score / 100, "n_test": len(task.test),
            "per_task_accuracy": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
            "compile_wall_s": round(compile_s, 1), "instruction": _instructions(program), **extra}


def _is_number(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def _instructions(program) -> dict[str, str]:
    from dspy_fgo.candidate import read_candidate

    return {k: v for k, v in read_candidate(program).items() if not k.endswith("::demos")}


def summarize(cells: list[dict]) -> str:
    lines = ["| cell | seed | test accuracy | optimizer calls | task calls (billed) | compile s | returned | code |",
             "|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (CELLS.index(c["cell"]) if c["cell"] in CELLS else 99, c["seed"])):
        task_calls = c.get("task_usage", {})
        lines.append(f"| {c['cell']} | {c['seed']} | {100 * c['test_accuracy']:.1f} % (n={c['n_test']}) | "
                     f"{c.get('optimizer_calls', 0)} | {task_calls.get('calls', '')} ({task_calls.get('billed_calls', '')}) | "
                     f"{c['compile_wall_s']:.0f} | {c.get('selection', {}).get('returned', '')} | {c.get('code_version')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), help=f"from {', '.join(CELLS)} (fgo-q<q> for any q)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="the embedded model, as the task model")
    parser.add_argument("--program", default="cot", choices=["predict", "cot"])
    parser.add_argument("--n-train", type=int, default=4)
    parser.add_argument("--n-val", type=int, default=4)
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--data", default=None, help="BBH JSONL directory (default: the vendored sample)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--out", default="benchmarks/results/known-rules")
    args = parser.parse_args(argv)
    for cell in args.cells:
        if cell not in ("unoptimized", "given") and not (cell.startswith("fgo-q") and _is_number(cell[5:])):
            parser.error(f"unknown cell {cell!r}: use unoptimized, given or fgo-q<q> (e.g. fgo-q0.5)")

    from benchmarks.run import code_version
    from benchmarks.tasks import bbh15
    from dspy_fgo.local import local_lm, serve

    rules = load_rules()
    task = bbh15(program=args.program, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, source=args.data)
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["python -m benchmarks.known_rules", *(sys.argv[1:] if argv is None else argv)]),
            "code_version": code_version(),
            "model": args.model, "program": args.program, "splits": [args.n_train, args.n_val, args.n_test]}
    with serve(args.model, n_ctx=8192, n_parallel=2, n_threads=2) as server:
        task_lm = local_lm(server, temperature=0.0, max_tokens=args.max_tokens)
        for cell in args.cells:
            for seed in args.seeds:
                path = out / "cells" / f"{cell}-seed{seed}.json"
                if path.exists():
                    print(f"{path.name}: done before, skipped", flush=True)
                    continue
                units = out / "checkpoints" / f"{cell}-seed{seed}"  # an interrupted FGO cell resumes from here
                result = {**run_cell(cell, seed, task, args.program, task_lm, rules, units), **meta}
                path.write_text(json.dumps(result, indent=1, default=str))
                print(f"{cell} seed {seed}: {100 * result['test_accuracy']:.1f} %", flush=True)
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    table = summarize(cells)
    (out / "results.md").write_text(f"# Known rules on the real task model\n\n{__doc__.splitlines()[0]}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scaling: how the optimizer prompt grows with the trainset, per method (fake LM, zero latency).

    python -m benchmarks.scaling                 # 60, 600, 6,000 examples
    python -m benchmarks.scaling --quick         # 60, 600 (CI)
    python -m benchmarks.scaling --sizes 60000   # the largest size takes long on 2 cores
    python -m benchmarks.scaling --methods MIPROv2   # DSPy's MIPROv2 (light) on the same data

The fake LM answers instantly, so this measures the optimizer, not a model: the peak and total
optimizer prompt tokens (estimated as characters / 4), the runs dropped to fit the optimizer's
context, the runs critiqued and the critiques distilled into lessons, LM calls, wall time and peak
memory (each cell runs in a fresh process). Every example carries a long input (a ~1,500-character
trajectory), as agent traces do. The trainset has 10 categories, and FGO partitions by category:
at 60, 600 and 6,000 examples each of its 10 partitions holds 6, 60 and 600 examples, so this
measures what happens to FGO's prompts when its partitions grow, not when their number does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CONTEXT = 128_000  # a large optimizer window (gpt-4o class), so all-at-once can grow before it is trimmed
KINDS = 10  # categories; FGO's partitions, which grow with the trainset
BATCH_SIZE = 20  # Batch-wise


def make_trainset(n: int):
    import dspy

    filler = " ".join(f"step {j}: observed value {j * 7 % 13}." for j in range(70))  # ~1,500 chars
    return [dspy.Example(question=f"task {i % KINDS} case {i}. {filler}", answer=f"a{i % KINDS}", kind=str(i % KINDS))
            .with_inputs("question") for i in range(n)]


def run_cell(method: str, n: int) -> dict:
    import dspy

    from benchmarks.smoke import ScriptedLM
    from dspy_fgo import FGO, AllAtOnce, BatchWise

    trainset = make_trainset(n)
    task, prompt = ScriptedLM("fake/task", "a0"), ScriptedLM("fake/optimizer", "Answer with the case's task label.")
    common = dict(task_model=task, prompt_model=prompt, epochs=1, num_threads=2, max_prompt_tokens=CONTEXT,
                  critique_successes=0)

    def metric(example, prediction, trace=None):
        return example.answer == prediction.answer

    if method == "MIPROv2":
        return run_mipro(n, trainset, task, prompt, metric)
    optimizer = {
        "FGO": lambda: FGO(metric=metric, partition_by="kind", max_demos=0, **common),
        "AllAtOnce": lambda: AllAtOnce(metric=metric, **common),
        "BatchWise": lambda: BatchWise(metric=metric, batch_size=BATCH_SIZE, **common),
    }[method]()
    start = time.perf_counter()
    optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset)
    wall = time.perf_counter() - start
    report = optimizer.report_
    opt = report.usage["optimizer"]
    return row(method, n, wall, opt, report.usage["task"]["calls"], report.events.get("runs_critiqued", 0),
               report.events.get("critiques_distilled", 0))


def run_mipro(n, trainset, task, prompt, metric) -> dict:
    """DSPy's MIPROv2 (auto="light", up to 2 demos) on the same data, metered per model."""
    import dspy

    from dspy_fgo.run.accounting import Meters

    meters = Meters()
    optimizer = dspy.MIPROv2(metric=metric, prompt_model=prompt, task_model=task, auto="light",
                             max_bootstrapped_demos=2, max_labeled_demos=2, num_threads=2, seed=0, verbose=False)
    start = time.perf_counter()
    with meters.metered("inner", task):
        optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset, requires_permission_to_run=False)
    wall = time.perf_counter() - start
    by_model = meters["inner"].by_model
    empty = {"peak_prompt_tokens": 0, "prompt_tokens": 0, "calls": 0}
    opt = by_model[prompt.model].to_dict() if prompt.model in by_model else empty
    task_calls = by_model[task.model].calls if task.model in by_model else 0
    return row("MIPROv2", n, wall, opt, task_calls, None, None)


def row(method, n, wall, opt: dict, task_calls: int, critiqued, distilled) -> dict:
    return {
        "method": method, "n": n, "wall_s": round(wall, 1),
        "peak_prompt_tokens": opt["peak_prompt_tokens"], "optimizer_prompt_tokens": opt["prompt_tokens"],
        "optimizer_calls": opt["calls"], "task_calls": task_calls,
        "runs_critiqued": critiqued if critiqued is not None else "n/a",
        "critiques_distilled": distilled if distilled is not None else "n/a",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated trainset sizes")
    p.add_argument("--methods", default="FGO,AllAtOnce,BatchWise,MIPROv2")
    p.add_argument("--quick", action="store_true", help="60 and 600 examples only (CI)")
    p.add_argument("--out", default="benchmarks/results/scaling")
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # internal: run one cell, print JSON
    args = p.parse_args(argv)
    if args.cell:
        method, n = args.cell.split(":")
        print(json.dumps(run_cell(method, int(n))))
        return 0
    sizes = [int(s) for s in (args.sizes or ("60,600" if args.quick else "60,600,6000")).split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        for method in args.methods.split(","):
            proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--cell", f"{method}:{n}"],
                                  capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{method:>10} n={n:<6} peak prompt {row['peak_prompt_tokens']:>7} tokens, total "
                  f"{row['optimizer_prompt_tokens']:>10}, calls {row['optimizer_calls']:>5}, runs critiqued "
                  f"{str(row['runs_critiqued']):>6}, {row['wall_s']:>7}s, {row['peak_rss_mb']} MB", flush=True)
    (out / "scaling.json").write_text(json.dumps(rows, indent=2))
    lines = ["| method | trainset | peak optimizer prompt (tokens) | total optimizer prompt tokens | optimizer calls "
             "| task calls | runs critiqued | critiques distilled | wall s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['n']} | {r['peak_prompt_tokens']} | {r['optimizer_prompt_tokens']} | "
              f"{r['optimizer_calls']} | {r['task_calls']} | {r['runs_critiqued']} | {r['critiques_distilled']} | "
              f"{r['wall_s']} | {r['peak_rss_mb']} |"
              for r in rows]
    (out / "scaling.md").write_text("Command: `python -m benchmarks.scaling " + " ".join(argv or sys.argv[1:]) +
                                    "`\n\n" + "\n".join(lines) + "\n")
    _plot(rows, out)
    print("\n".join(lines))
    return 0


def _plot(rows, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        ax.plot([r["n"] for r in mine], [r["peak_prompt_tokens"] for r in mine], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("trainset size")
    ax.set_ylabel("peak optimizer prompt (tokens)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "peak_prompt.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

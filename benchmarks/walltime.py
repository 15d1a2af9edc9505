"""Wall time: FGO's compile against the critical-path lower bound and against a sequential run.

    python -m benchmarks.walltime [--latency 0.05] [--partitions 8] [--threads 8]

A fake LM sleeps a fixed latency per call, so time measures how well FGO overlaps its calls.
Lower bound: the longest chain of dependent LM calls (per partition: evaluate, critique, rewrite
per epoch, then a final evaluation; then per merge level: merge, validate; then selection) times
the latency, or the total calls times the latency divided by the threads, whichever is larger.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def compile_once(latency: float, partitions: int, threads: int, epochs: int):
    import dspy

    from benchmarks.scaling import make_trainset
    from benchmarks.smoke import ScriptedLM
    from dspy_fgo import FGO

    trainset = make_trainset(partitions * 4)
    lms = [ScriptedLM("fake/task", "a0", latency), ScriptedLM("fake/optimizer", "Answer with the label.", latency)]
    fgo = FGO(metric=lambda ex, pred, trace=None: ex.answer == pred.answer, partition_by="random",
              n_partitions=partitions, epochs=epochs, num_threads=threads, task_model=lms[0], prompt_model=lms[1],
              critique_successes=0)
    start = time.perf_counter()
    fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)
    return time.perf_counter() - start, fgo.report_


def critical_path_calls(report) -> int:
    """The longest chain of dependent LM calls in this run."""
    per_partition = max(3 * (len(p.epochs) - 1) + 1 for p in report.partitions)
    merges = max(node["level"] for node in report.tree)  # each level: one merge call, then validation
    return per_partition + 2 * merges + 1  # + the final selection's evaluation


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.walltime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/walltime")
    args = p.parse_args(argv)
    parallel, report = compile_once(args.latency, args.partitions, args.threads, args.epochs)
    sequential, _ = compile_once(args.latency, args.partitions, 1, args.epochs)
    calls = sum(u["calls"] for u in report.usage.values())
    bound = max(critical_path_calls(report) * args.latency, calls * args.latency / args.threads)
    result = {
        "latency_s": args.latency, "partitions": args.partitions, "threads": args.threads, "epochs": args.epochs,
        "lm_calls": calls, "critical_path_calls": critical_path_calls(report),
        "lower_bound_s": round(bound, 2), "fgo_parallel_s": round(parallel, 2), "sequential_s": round(sequential, 2),
        "parallel_over_bound": round(parallel / bound, 2), "sequential_over_parallel": round(sequential / parallel, 2),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "walltime.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

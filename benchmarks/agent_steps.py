"""What an agent cell's program did on each test invoice, replayed from DSPy's disk cache.

    python -m benchmarks.agent_steps benchmarks/results/ubl-agent/cells/ubl-agent-predict-unoptimized-seed0.json

A benchmark cell keeps scores, not trajectories. This rebuilds the cell's program (the agent with
the cell's instructions and tool descriptions), runs it on the same test invoices with the same
task-model settings, and prints each run's tool calls. No model server is started: every call
must be a hit in DSPy's cache (a miss fails at once and is shown as an error), so this shows the
very runs that were scored, in seconds. The totals it prints (steps, finished runs, repeated
calls) and a Markdown copy go next to the cell (``<cell>.steps.md``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.tasks import TASKS  # noqa: E402
from dspy_fgo.candidate import apply_candidate  # noqa: E402


def tool_calls(trajectory: dict) -> list[tuple[str, str]]:
    """(tool name, its arguments as JSON) for each step of a ReAct trajectory."""
    steps, i = [], 0
    while f"tool_name_{i}" in trajectory:
        steps.append((trajectory[f"tool_name_{i}"], json.dumps(trajectory.get(f"tool_args_{i}", {}), sort_keys=True)))
        i += 1
    return steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.agent_steps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cell", help="a cell JSON of an agent task (benchmarks/results/<run>/cells/...)")
    args = p.parse_args(argv)
    cell_path = Path(args.cell)
    cell = json.loads(cell_path.read_text())
    config = json.loads((cell_path.parent.parent / "config.json").read_text())
    task = TASKS[cell["task"]](n_train=config["n_train"], n_val=config["n_val"], n_test=config["n_test"])
    # The benchmark's task LM, pointed nowhere: DSPy's cache key leaves out api_base and api_key.
    lm = dspy.LM(config["task_model"], api_base="http://127.0.0.1:9", api_key="local", temperature=0.0,
                 max_tokens=config.get("max_tokens", 512), num_retries=0, **({"stop": cell["task_stop"]}
                                                                            if cell.get("task_stop") else {}))
    program = apply_candidate(task.make_program(), cell["instructions"])
    lines, totals = [], Counter()
    with dspy.context(lm=lm):
        for example in task.test:
            try:
                pred = program(**example.inputs())
                calls, answer, error = tool_calls(pred.trajectory), pred.answer, ""
                observed = " ".join(str(v) for k, v in pred.trajectory.items() if k.startswith("observation_"))
            except Exception as exc:  # a cache miss: this run was not replayed
                calls, answer, error, observed = [], "", f"{type(exc).__name__}", ""
            seen = example.answer in observed  # the tools showed the agent the answer
            right = bool(task.metric(example, dspy.Prediction(answer=answer))) if not error else False
            repeats = sum(a == b for a, b in zip(calls, calls[1:]))
            totals.update(runs=1, right=right, seen=seen, steps=len(calls), repeats=repeats, errors=bool(error),
                          finished=bool(calls) and calls[-1][0] == "finish")
            totals.update({f"tool {name}": 1 for name, _ in calls})
            path = " → ".join(name for name, _ in calls) or error
            lines.append(f"| {example.layout} | {example.answer} | {answer} | {'yes' if right else 'no'} | "
                         f"{len(calls)} | {repeats} | {path} |")
    n = max(1, totals["runs"] - totals["errors"])
    summary = (f"{totals['runs']} runs ({totals['errors']} not in the cache), {totals['right']} right, "
               f"{totals['seen']} with the answer in a tool's observation; "
               f"{totals['steps'] / n:.1f} steps a run; {totals['finished']} called finish; "
               f"{totals['repeats']} steps repeated the previous call exactly; tool calls: "
               + ", ".join(f"{k[5:]} {v}" for k, v in sorted(totals.items()) if k.startswith("tool ")))
    table = ["| layout | expected | answered | right | answer observed | steps | repeated | tool calls |",
             "|---|---|---|---|---|---|---|---|",
             *lines]
    text = f"# {cell['task']} {cell['method']} seed {cell['seed']}: the test runs\n\n{summary}\n\n" + "\n".join(table) + "\n"
    cell_path.with_suffix(".steps.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

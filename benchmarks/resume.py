"""Resume: what a SIGKILL costs a compile with ``checkpoint_dir`` (fake LMs with a fixed latency).

    python -m benchmarks.resume [--latency 0.02] [--kills 0.3,0.6,0.9]

Each attempt runs in a fresh process with the default ``num_threads`` and no DSPy cache. First an
uninterrupted compile counts its optimizer calls; then, per kill point, a compile is killed with
SIGKILL on that fraction of those calls and rerun on the same checkpoint directory until it
finishes. "Redone" is the optimizer calls made in all, less the uninterrupted run's: the work the
kill lost. The resumed result must equal the uninterrupted one.

The fake world makes partitions learn one step per epoch, so a kill can land mid-partition: a
question numbered i is answered right when the instruction holds more than i copies of its
category's STEP, and the fake optimizer adds one STEP per rewrite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
EPOCHS = 3


def world_lm(model: str, latency: float, kill_after: int | None = None):
    import threading
    from types import SimpleNamespace

    import dspy

    class WorldLM(dspy.BaseLM):
        """The task model (right iff enough STEPs) or the optimizer (adds one STEP per rewrite)."""

        def __init__(self):
            super().__init__(model=model, model_type="chat", temperature=0.0, max_tokens=100, cache=False)
            self.calls = 0
            self._lock = threading.Lock()

        def forward(self, prompt=None, messages=None, **kwargs):
            with self._lock:
                self.calls += 1
                if kill_after is not None and self.calls >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(latency)
            system, user = messages[0]["content"], messages[-1]["content"]
            block = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
            fields = re.findall(r"\d+\. `(\w+)`", block)
            values = task_answer(system, user) if model.endswith("task") else optimizer_answer(fields, user)
            content = "\n\n".join(f"[[ ## {f} ## ]]\n{values.get(f, 'ok')}" for f in fields)
            message = SimpleNamespace(content=content + "\n\n[[ ## completed ## ]]", tool_calls=None)
            return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop", logprobs=None)],
                                   usage={"prompt_tokens": len(user) // 4, "completion_tokens": 10},
                                   model=self.model, cache_hit=False)

    return WorldLM()


def _question(user: str) -> list[str]:
    return user.rsplit("[[ ## question ## ]]", 1)[-1].split()


def task_answer(system: str, user: str) -> dict:
    words = _question(user)
    category, number = words[0], int(words[3])
    steps = system.count(f"STEP-{category}")
    return {"answer": f"{category}-{number}" if steps > number else "unknown"}


def optimizer_answer(fields: list[str], user: str) -> dict:
    if "new_instruction" in fields:
        current = user.split("[[ ## current_instruction ## ]]", 1)[1].split("[[ ##", 1)[0].strip()
        category = re.search(r"Input: question: (\w+)", user)
        return {"new_instruction": f"{current} STEP-{category[1] if category else 'none'}"}
    if "merged_instruction" in fields:
        steps = re.findall(r"STEP-\w+", user.split("[[ ## candidates ## ]]", 1)[1].split("[[ ## length_limit", 1)[0])
        return {"analysis": "steps", "merged_instruction": "Answer. " + " ".join(steps)}
    return {f: "Add a step." for f in fields}


def examples(per_category: int, kind: str = "train"):
    import dspy

    return [dspy.Example(question=f"{c} question number {i} about {c} ({kind})", answer=f"{c}-{i}", category=c)
            .with_inputs("question") for c in CATEGORIES for i in range(per_category)]


def attempt(directory: str, latency: float, kill_after: int | None) -> dict:
    """One compile (killed with SIGKILL on optimizer call ``kill_after``, if given)."""
    import dspy

    from dspy_fgo import FGO, read_candidate

    task, optimizer = world_lm("fake/task", latency), world_lm("fake/optimizer", latency, kill_after)
    fgo = FGO(metric=lambda ex, pred, trace=None: ex.answer == pred.answer, partition_by="category",
              task_model=task, prompt_model=optimizer, epochs=EPOCHS, max_demos=0, checkpoint_dir=directory)
    # every epoch writes and accepts: there is an epoch in flight to kill
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=examples(2),
                          valset=examples(EPOCHS + 1, "held out"))
    return {"optimizer_calls": optimizer.calls, "candidate": read_candidate(program),
            "epochs": [len(p.epochs) for p in fgo.report_.partitions],
            "resumed_mid_way": fgo.report_.events.get("partitions_resumed_mid_way", 0)}


def run_attempt(directory: str, latency: float, kill_after: int | None) -> dict | None:
    """``attempt`` in a fresh process; None when it was killed."""
    command = [sys.executable, "-m", "benchmarks.resume", "--attempt", directory, "--latency", str(latency)]
    if kill_after is not None:
        command += ["--kill-after", str(kill_after)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode == -signal.SIGKILL:
        return None
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(kills: list[float], latency: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        full = run_attempt(os.path.join(tmp, "full"), latency, None)
        rows = []
        for fraction in kills:
            directory = os.path.join(tmp, f"kill-{fraction}")
            kill_after = max(1, round(fraction * full["optimizer_calls"]))
            assert run_attempt(directory, latency, kill_after) is None, "the attempt was meant to be killed"
            resumed = run_attempt(directory, latency, None)
            made = (kill_after - 1) + resumed["optimizer_calls"]  # the call that was killed never returned
            rows.append({"kill_at": fraction, "killed_after_calls": kill_after - 1,
                         "calls_after_resume": resumed["optimizer_calls"], "uninterrupted_calls": full["optimizer_calls"],
                         "redone": made - full["optimizer_calls"], "partitions_resumed_mid_way": resumed["resumed_mid_way"],
                         "same_result": resumed["candidate"] == full["candidate"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.resume", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.02, help="seconds per fake LM call")
    p.add_argument("--kills", default="0.3,0.6,0.9", help="fractions of the optimizer calls to kill at")
    p.add_argument("--out", default="benchmarks/results/resume")
    p.add_argument("--attempt", default=None, help=argparse.SUPPRESS)  # internal: one compile, print JSON
    p.add_argument("--kill-after", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.attempt:
        print(json.dumps(attempt(args.attempt, args.latency, args.kill_after)))
        return 0
    rows = measure([float(k) for k in args.kills.split(",")], args.latency)
    lines = ["| killed at | optimizer calls before the kill | calls after resume | uninterrupted run's calls "
             "| calls redone | partitions resumed mid-way | result equals the uninterrupted run |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kill_at']:.0%} | {r['killed_after_calls']} | {r['calls_after_resume']} | "
              f"{r['uninterrupted_calls']} | {r['redone']} | {r['partitions_resumed_mid_way']} | "
              f"{'yes' if r['same_result'] else 'NO'} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "resume.json").write_text(json.dumps(rows, indent=2))
    (out / "resume.md").write_text(f"Command: `python -m benchmarks.resume {' '.join(argv or sys.argv[1:])}`\n\n"
                                   + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

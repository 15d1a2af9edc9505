"""Fixed fake-LM compiles whose reports must not change when the code is only restructured.

    python tests/golden.py --write      # record the reports (after an intended change of behaviour)

``tests/test_golden.py`` compiles the same programs and compares every field of each report with
the recorded one, except wall times. A difference means the behaviour changed: if that was the
intent, record again and say why in the commit.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).parent))

import dspy  # noqa: E402

from conftest import exact, losing_merge_respond, make_examples, optimizer_respond, task_respond  # noqa: E402
from fakes import FakeLM  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"
CATS = ["alpha", "beta", "gamma", "delta"]
VOLATILE = ("timings",)  # wall times: the only fields a rerun may change


class RuleTeleprompter(dspy.teleprompt.Teleprompter):
    """An inner optimizer that adds its partition's rule and one demo."""

    def __init__(self, seed):
        super().__init__()

    def compile(self, student, *, trainset, valset=None):
        program = student.deepcopy()
        program.signature = program.signature.with_instructions(
            f"{program.signature.instructions} RULE-{trainset[0].category}")
        program.demos = [trainset[0]]
        return program


def lookup(key: str) -> str:
    """Look up a key in the knowledge base."""
    return f"value of {key}"


def _agent_respond(fields, messages):
    from test_react import agent_respond

    return agent_respond(fields, messages)


def compiles() -> dict:
    """name -> a function returning the report of one fixed compile (fresh fake LMs each time)."""
    from dspy_fgo import FGO

    trainset, valset = make_examples(CATS, per_category=6), make_examples(CATS, per_category=3)

    def fgo(student=None, task=task_respond, train=trainset, val=valset, optimizer_lm=optimizer_respond, **settings):
        settings.setdefault("route", False)  # the paper's one merged program, unless a compile says otherwise
        optimizer = FGO(metric=exact, task_model=FakeLM(task, model="fake/task"),
                        prompt_model=FakeLM(optimizer_lm, model="fake/optimizer"), partition_by="category",
                        num_threads=1, **settings)
        optimizer.compile(student or dspy.Predict("question -> answer"), trainset=train, valset=val)
        return optimizer.report_

    def resumed():
        with tempfile.TemporaryDirectory() as folder:
            fgo(checkpoint_dir=folder)
            return fgo(checkpoint_dir=folder)

    def agent():
        return fgo(dspy.ReAct("question -> answer", tools=[lookup], max_iters=3), task=_agent_respond,
                   train=make_examples(CATS[:2]), val=None, epochs=1, optimize_tools=True)

    return {
        "merged": lambda: fgo(),
        "default": lambda: fgo(route="auto"),
        "route-demos": lambda: fgo(route="demos"),
        "route-true": lambda: fgo(route=True),
        "inner": lambda: fgo(inner=RuleTeleprompter),
        "agent-tools": agent,
        "resumed": resumed,
        "no-valset": lambda: fgo(val=None),
        "losing-merges": lambda: fgo(optimizer_lm=losing_merge_respond),
    }


def stable(report) -> dict:
    text = json.dumps(report.to_dict(), default=str)
    folder = report.settings.get("checkpoint_dir")
    if folder:  # a temporary folder: its name changes from run to run
        text = text.replace(json.dumps(str(folder))[1:-1], "<checkpoint_dir>")
    data = json.loads(text)
    for key in VOLATILE:
        data.pop(key, None)
    return data


def main(argv=None) -> int:
    if "--write" not in (argv or sys.argv[1:]):
        print(__doc__)
        return 2
    GOLDEN.mkdir(exist_ok=True)
    for name, run in compiles().items():
        (GOLDEN / f"{name}.json").write_text(json.dumps(stable(run()), indent=1, sort_keys=True) + "\n")
        print(f"recorded {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

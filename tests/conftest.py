"""A toy world for offline tests: categories whose questions are answered right only when the
instruction states that category's rule, and a fake optimizer that learns rules from failures.

So FGO's plumbing can be checked end to end with real DSPy calls, deterministically.
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(__file__))

import dspy  # noqa: E402
import pytest  # noqa: E402

from fakes import FakeLM, field_value  # noqa: E402

RULE = re.compile(r"RULE-(\w+)")


# The toy world's partitions hold one or two held-out checks, where no paired sign test can pass:
# tests of the plumbing around an accepted proposal accept any gain there (the paper's rule);
# test_evidence.py tests the default test on partitions large enough for it.
TOY_Z = 0.0


def make_examples(categories, per_category=3):
    examples = []
    for c in categories:
        for i in range(per_category):
            examples.append(
                dspy.Example(question=f"{c} question number {i} about {c} things", answer=f"{c}-{i}", category=c)
                .with_inputs("question")
            )
    return examples


def objective(messages) -> str:
    system = messages[0]["content"]
    return system.split("your objective is:", 1)[-1]


def task_respond(fields, messages):
    """Right iff the instruction holds the rule for the question's category."""
    question = field_value(messages, "question")
    category, number = question.split()[0], question.split()[3]
    known = set(RULE.findall(objective(messages)))
    answer = f"{category}-{number}" if category in known else "unknown"
    return {f: (answer if f == "answer" else f"thinking about {category}") for f in fields}


def optimizer_respond(fields, messages):
    """Critique names the rule a failed run needed; rewrite and merge collect rules."""
    user = messages[-1]["content"]
    if "critique" in fields:
        runs = field_value(messages, "run") or field_value(messages, "runs")  # one run, or a batch
        needed = sorted({
            block.split()[0] for block in runs.split("Input: question: ")[1:] if "Score: 0.00" in block
        })
        return {"critique": " ".join(f"Needs RULE-{c}." for c in needed) or "Worked."}
    rules = sorted(set(RULE.findall(user)))
    text = "Answer the question. " + " ".join(f"RULE-{r}" for r in rules)
    return {f: text for f in fields}


def exact(example, prediction, trace=None):
    return prediction.answer == example.answer


@pytest.fixture
def task_lm():
    return FakeLM(task_respond, model="fake/task")


@pytest.fixture
def prompt_lm():
    return FakeLM(optimizer_respond, model="fake/optimizer")


@pytest.fixture(autouse=True)
def _no_global_lm():
    with dspy.context(lm=None):
        yield


def losing_merge_respond(fields, messages):
    """The optimizer, except that every merge drops every rule, so the merged node loses to its best child."""
    if "merged_instruction" in fields:
        return {f: "Answer the question briefly." for f in fields}
    return optimizer_respond(fields, messages)

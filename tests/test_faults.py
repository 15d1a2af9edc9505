"""Fault matrix: what a bad optimizer answer, a leaky setting or a failing call does to a run."""

import json

import dspy
import pytest

from conftest import exact, make_examples, optimizer_respond
from dspy_fgo import FGO, read_candidate
from fakes import FakeLM


@pytest.mark.parametrize(
    "bad_answer",
    ["", "[[ ## new_instruction ## ]] leaked framing", "### Run 1\nInput: question: alpha...\nCritique: copy"],
    ids=["empty", "unparseable", "copy-of-prompt"],
)
def test_bad_rewrites_leave_the_previous_candidate(task_lm, bad_answer):
    def respond(fields, messages):
        if "new_instruction" in fields or "merged_instruction" in fields:
            return {f: bad_answer for f in fields}
        return optimizer_respond(fields, messages)

    student = dspy.Predict("question -> answer")
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=2)
    program = fgo.compile(student, trainset=make_examples(["alpha", "beta"]))
    assert read_candidate(program) == read_candidate(student)
    assert fgo.report_.events.get("proposals_rejected", 0) > 0 or fgo.report_.events.get("critique_calls_failed", 0) > 0


def test_optimizer_call_errors_keep_the_run_going(task_lm):
    def fail(text):
        raise ConnectionError("rate limited")

    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond, fail=fail),
              partition_by="category", epochs=1)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    assert fgo.report_.usage["optimizer"]["errors"] > 0
    assert read_candidate(program)["self"]


def test_api_keys_never_reach_reports_or_checkpoints(tmp_path, task_lm):
    secret = "sk-test-SECRET-0123456789"
    prompt = FakeLM(optimizer_respond, model="fake/optimizer")
    prompt.kwargs["api_key"] = secret
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt, partition_by="category", epochs=1,
              checkpoint_dir=str(tmp_path))
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    assert secret not in json.dumps(fgo.report_.to_dict())
    assert all(secret not in path.read_text() for path in tmp_path.iterdir())


def test_llm_output_is_never_executed(task_lm):
    # An instruction that looks like code stays text: it is applied as an instruction, nothing more.
    payload = "__import__('os').system('touch /tmp/dspy_fgo_pwned')"

    def respond(fields, messages):
        return {f: (f"Answer the question. {payload}" if f != "critique" else "Needs RULE-alpha.") for f in fields}

    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    import os

    assert not os.path.exists("/tmp/dspy_fgo_pwned")

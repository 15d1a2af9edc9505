"""The paper's baselines on the toy world: control flow, sampling, trimming, report shape."""

import random

import dspy
import pytest

from conftest import RULE, exact, make_examples
from dspy_fgo import FGO, AllAtOnce, BatchWise, Bootstrapping

CATS = ["alpha", "beta", "gamma"]


def run(cls, task_lm, prompt_lm, trainset=None, **settings):
    optimizer = cls(metric=exact, task_model=task_lm, prompt_model=prompt_lm, **settings)
    trainset = trainset or make_examples(CATS, per_category=4)
    return optimizer, optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset)


def test_all_at_once_updates_once_per_epoch_from_everything(task_lm, prompt_lm):
    optimizer, program = run(AllAtOnce, task_lm, prompt_lm, epochs=2)
    steps = optimizer.report_.steps
    assert len(steps) == 2 and all(len(step["batch"]) == 12 for step in steps)
    assert set(RULE.findall(program.signature.instructions)) == set(CATS)


def test_batch_wise_uses_fixed_batches_in_sequence(task_lm, prompt_lm):
    optimizer, _ = run(BatchWise, task_lm, prompt_lm, epochs=2, batch_size=5)
    batches = [step["batch"] for step in optimizer.report_.steps]
    assert batches == [list(range(0, 5)), list(range(5, 10)), [10, 11]] * 2


def test_bootstrapping_samples_with_replacement_under_a_seed(task_lm, prompt_lm):
    optimizer, _ = run(Bootstrapping, task_lm, prompt_lm, batch_size=6, iterations=4, seed=3)
    batches = [step["batch"] for step in optimizer.report_.steps]
    rng = random.Random(3)
    assert batches == [sorted(rng.choices(range(12), k=6)) for _ in range(4)]
    assert any(len(set(b)) < len(b) for b in batches)  # with replacement: repeats happen at this size
    again, _ = run(Bootstrapping, task_lm, prompt_lm, batch_size=6, iterations=4, seed=3)
    assert [s["batch"] for s in again.report_.steps] == batches


def test_all_at_once_distills_every_run_into_a_bounded_prompt_and_says_so(task_lm, prompt_lm):
    trainset = make_examples([f"c{i}" for i in range(40)], per_category=3)
    optimizer, _ = run(AllAtOnce, task_lm, prompt_lm, trainset=trainset, epochs=1, max_prompt_tokens=1500)
    report = optimizer.report_
    # Every failed run was critiqued (120 runs, all failing, plus no success) and the critiques of
    # its groups were condensed, rather than runs being dropped to fit.
    assert report.events["runs_critiqued"] == 120
    assert report.events["critiques_distilled"] >= 120 // 6
    assert any("distilled into lessons" in note for note in report.notes)
    # Every prompt the optimizer saw stayed within the budget (fake LM: ~4 chars per token).
    assert report.usage["optimizer"]["peak_prompt_tokens"] <= 1500


def test_baseline_reports_have_fgos_shape(task_lm, prompt_lm):
    fgo, _ = run(FGO, task_lm, prompt_lm, partition_by="category", epochs=1)
    for cls in (AllAtOnce, BatchWise, Bootstrapping):
        optimizer, _ = run(cls, task_lm, prompt_lm, epochs=1)
        report = optimizer.report_
        assert set(report.usage) == set(fgo.report_.usage) == {"task", "optimizer", "embedder", "inner"}
        assert "peak_prompt_tokens" in report.usage["optimizer"] and "select" in report.timings
        assert report.selection["returned"] in ("final", "unoptimized")
        assert report.method == cls.__name__


@pytest.mark.parametrize("cls", [BatchWise, Bootstrapping])
def test_bad_batch_settings(cls):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        cls(metric=exact, batch_size=0)


def test_knn_fewshot_shows_each_input_its_nearest_labeled_examples():
    from dspy_fgo.baselines import knn_fewshot
    from fakes import FakeLM

    seen = []

    def task(fields, messages):
        seen.append(" ".join(m["content"] for m in messages[1:-1]))  # the demos, between system and question
        return {f: "x" for f in fields}

    program = knn_fewshot(dspy.Predict("question -> answer"), make_examples(["alpha", "beta", "gamma"]), k=2)
    with dspy.context(lm=FakeLM(task, model="fake/task")):
        program(question="beta question number 7 about beta things")
    assert seen and seen[-1].count("beta question") == 2 and "alpha" not in seen[-1] and "gamma" not in seen[-1]

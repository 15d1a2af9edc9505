"""FGO with another teleprompter inside each partition: a fake one, MIPROv2 and GEPA for real."""

import json

import dspy
import pytest

from conftest import RULE, exact, make_examples
from dspy_fgo import FGO, read_candidate
from dspy_fgo.candidate import DEMOS
from dspy_fgo.optimize.inner import compile_with
from dspy_fgo.merge import MergeNode, merge_demos

CATS = ["alpha", "beta", "gamma"]


class RuleTeleprompter(dspy.teleprompt.Teleprompter):
    """Adds the partition's category rule and one demo: what a real inner optimizer would find."""

    created = []

    def __init__(self, seed):
        super().__init__()
        self.seed = seed
        RuleTeleprompter.created.append(seed)

    def compile(self, student, *, trainset, valset=None):
        program = student.deepcopy()
        category = trainset[0].category
        program.signature = program.signature.with_instructions(f"{program.signature.instructions} RULE-{category}")
        program.demos = [trainset[0]]
        return program


def test_fake_inner_teleprompter_per_partition_with_its_own_seed(task_lm, prompt_lm):
    RuleTeleprompter.created = []
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", seed=10,
              inner=RuleTeleprompter, route=False)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(CATS))
    assert sorted(RuleTeleprompter.created) == [10, 11, 12]
    assert set(RULE.findall(program.signature.instructions)) == set(CATS)
    # Each partition found one demo of its own category; the merges carried one of them through,
    # capped at the largest child's count (1), and validated it with the merged instructions.
    leaves = [json.loads(p.candidate["self" + DEMOS]) for p in fgo.report_.partitions]
    assert [[d["category"] for d in demos] for demos in leaves] == [[c] for c in CATS]
    assert len(program.demos) == 1 and program.demos[0].toDict() in [d for demos in leaves for d in demos]
    assert any("demos:" in note for note in fgo.report_.notes)
    assert "self" + DEMOS in fgo.report_.tree[-1]["candidate"]


class DemoTeleprompter(dspy.teleprompt.Teleprompter):
    """Adds one demo of the partition's category, and leaves the instruction alone."""

    def __init__(self, seed):
        super().__init__()

    def compile(self, student, *, trainset, valset=None):
        program = student.deepcopy()
        program.demos = [trainset[0]]
        return program


def test_candidates_that_differ_only_in_demos_merge_in_a_balanced_tree(task_lm, prompt_lm):
    cats = [f"c{i}" for i in range(9)]
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category",
              inner=DemoTeleprompter)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(cats))
    # Same instruction everywhere: clustering sees identical texts and deals them out evenly,
    # 9 leaves -> 3 groups of 3 -> the root, instead of a chain shaped by the demos' JSON.
    assert max(node["level"] for node in fgo.report_.tree) == 2
    assert sorted(len(node["children"]) for node in fgo.report_.tree if node["children"]) == [3, 3, 3, 3]


def test_merge_demos_interleaves_best_first_and_caps():
    def node(i, score, demos):
        return MergeNode(id=i, candidate={"p" + DEMOS: json.dumps(demos)}, examples=[i], score=score)

    merged = json.loads(merge_demos("p" + DEMOS, [node(0, 0.5, [{"q": 1}, {"q": 2}]), node(1, 0.9, [{"q": 3}, {"q": 1}])]))
    assert merged == [{"q": 3}, {"q": 1}]


def test_inner_must_be_a_factory():
    with pytest.raises(TypeError, match="factory seed -> teleprompter"):
        FGO(metric=exact, inner=dspy.BootstrapFewShot(metric=exact))


def test_mipro_inside_fgo_runs_and_counts_as_inner(task_lm, prompt_lm):
    def mipro(seed):
        return dspy.MIPROv2(metric=exact, prompt_model=prompt_lm, task_model=task_lm, auto=None, num_candidates=2,
                            max_bootstrapped_demos=1, max_labeled_demos=1, seed=seed, num_threads=1, verbose=False)

    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", num_threads=1,
              inner=lambda seed: compile_with(mipro(seed), num_trials=2, minibatch=False))  # tqdm: see below
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(CATS[:2], per_category=4))
    usage = fgo.report_.usage["inner"]
    assert usage["calls"] > 0 and usage["prompt_tokens"] > 0
    assert set(usage["by_model"]) == {"fake/task", "fake/optimizer"}
    assert "MIPROv2" in " ".join(fgo.report_.notes)
    assert read_candidate(program)["self"]


def test_gepa_inside_fgo_runs(task_lm, prompt_lm):
    def feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return dspy.Prediction(score=float(exact(gold, pred)), feedback=f"expected {gold.answer}")

    def gepa(seed):
        return dspy.GEPA(metric=feedback, max_metric_calls=12, reflection_lm=prompt_lm, seed=seed, num_threads=1)

    # One partition at a time: two GEPAs in parallel threads each build tqdm bars, and tqdm's
    # instance WeakSet can then raise KeyError (tqdm/tqdm#548; seen once in a CI run, 2026-12-01).
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", inner=gepa,
              num_threads=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(CATS[:2], per_category=3))
    assert fgo.report_.usage["inner"]["calls"] > 0
    assert "GEPA" in " ".join(fgo.report_.notes)

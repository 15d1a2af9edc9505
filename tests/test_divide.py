"""Partitioning strategies and small-partition pooling."""

import dspy

from conftest import make_examples
from dspy_fgo import ByEmbedding, ByKey, RandomSplit
from dspy_fgo.divide import pool_small
from dspy_fgo.divide.embed import offline_embed


def test_by_field_and_by_callable():
    examples = make_examples(["a", "b", "c"], per_category=2)
    assert ByKey("category").split(examples, n_partitions=None, seed=0, embed=None) == {
        "a": [0, 1], "b": [2, 3], "c": [4, 5]
    }
    by_parity = ByKey(lambda ex: int(ex.answer[-1]) % 2).split(examples, n_partitions=None, seed=0, embed=None)
    assert by_parity == {"0": [0, 2, 4], "1": [1, 3, 5]}


def test_random_split_is_seeded_balanced_and_disjoint():
    examples = make_examples(["a", "b", "c", "d"], per_category=5)
    split = RandomSplit().split(examples, n_partitions=3, seed=1, embed=None)
    assert sorted(len(v) for v in split.values()) == [6, 7, 7]
    assert sorted(i for v in split.values() for i in v) == list(range(20))
    assert split == RandomSplit().split(examples, n_partitions=3, seed=1, embed=None)
    assert split != RandomSplit().split(examples, n_partitions=3, seed=2, embed=None)


def test_automatic_split_groups_similar_inputs():
    topics = {
        "cooking": "recipe oven bake flour sugar butter dough",
        "football": "goal striker penalty referee stadium league",
        "astronomy": "planet orbit telescope galaxy comet star",
    }
    examples = [
        dspy.Example(question=f"{words} question {i}", topic=t).with_inputs("question")
        for t, words in topics.items() for i in range(4)
    ]
    groups = ByEmbedding().split(examples, n_partitions=3, seed=0, embed=offline_embed)
    found = sorted(sorted({examples[i].topic for i in idx}) for idx in groups.values())
    assert found == [["astronomy"], ["cooking"], ["football"]]


def test_small_partitions_are_pooled_and_noted():
    parts, notes = pool_small({"big": [0, 1, 2], "tiny1": [3], "tiny2": [4]}, min_size=2)
    assert [(p.name, p.indices) for p in parts] == [("big", [0, 1, 2]), ("tiny1+tiny2", [3, 4])]
    assert "fewer than 2" in notes[0]
    parts, notes = pool_small({"big": [0, 1, 2], "small": [3, 4], "tiny": [5]}, min_size=3)
    assert [(p.name, p.indices) for p in parts] == [("big", [0, 1, 2]), ("small+tiny", [3, 4, 5])]
    parts, notes = pool_small({"big": [0, 1, 2], "tiny": [3]}, min_size=3)
    assert [(p.name, p.indices) for p in parts] == [("big+tiny", [0, 1, 2, 3])] and "pooled into 'big'" in notes[0]


def test_every_partition_too_small_still_runs(task_lm, prompt_lm):
    from conftest import exact
    from dspy_fgo import FGO

    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category",
              min_partition_size=5, epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a", "b", "c"], per_category=1))
    assert len(fgo.report_.partitions) == 1 and fgo.report_.notes


def test_embedder_failure_falls_back_with_a_warning(task_lm, prompt_lm, caplog):
    from conftest import exact
    from dspy_fgo import FGO

    def broken_embedder(texts):
        raise ConnectionError("embedding service down")

    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by=None, n_partitions=2,
              embedder=broken_embedder, epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a", "b"], per_category=3))
    assert fgo.report_.events["embedder_fallbacks"] >= 1
    assert "embedder failed" in caplog.text
    assert fgo.report_.usage["embedder"]["errors"] >= 1


def test_imbalanced_split_follows_the_papers_beta_sizes():
    from dspy_fgo import Imbalanced

    examples = make_examples([f"c{i}" for i in range(20)], per_category=3)  # 60, as the paper's ALFWorld
    for beta, sizes in ((0.6, [25, 15, 9, 6, 3, 2]), (0.8, [16, 13, 11, 8, 7, 5])):
        split = Imbalanced(beta).split(examples, n_partitions=6, seed=0, embed=None)
        assert [len(v) for v in split.values()] == sizes  # Appendix B's figures
        assert sorted(i for v in split.values() for i in v) == list(range(60))
    assert Imbalanced(1.0).sizes(60, 6) == [10] * 6
    assert min(Imbalanced(0.1).sizes(10, 5)) == 1  # every part keeps an example
    import pytest

    with pytest.raises(ValueError, match="beta must be a number in"):
        Imbalanced(0)


def test_difficulty_split_groups_examples_of_comparable_difficulty(prompt_lm):
    from conftest import exact, task_respond
    from fakes import FakeLM
    from dspy_fgo import FGO

    # The start instruction knows alpha's rule: alpha's questions are easy, the others hard.
    student = dspy.Predict(dspy.Signature("question -> answer", "Answer. RULE-alpha"))
    task = FakeLM(task_respond, model="fake/task")
    fgo = FGO(metric=exact, task_model=task, prompt_model=prompt_lm, partition_by="difficulty", n_partitions=2,
              epochs=0, max_demos=0)
    fgo.compile(student, trainset=make_examples(["beta", "alpha", "gamma"], per_category=2))
    parts = {p.name: p for p in fgo.report_.partitions}
    assert parts["difficulty-0"].score_before == 1.0 and parts["difficulty-1"].score_before == 0.0
    # The rollout is reused, not repeated: the 6 runs of the split are every run the compile made
    # (without a valset the held-out checks are trainset examples too).
    assert fgo.report_.usage["task"]["calls"] == 6


def test_held_out_examples_go_to_the_partition_the_router_sends_them_to():
    import random

    from dspy_fgo.divide import Partition, assign_checks, input_text
    from dspy_fgo.route import Router
    from dspy_fgo.divide.space import Space

    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]

    def text():
        return " ".join(rng.sample(words, 5))

    # A check must belong to the partition the returned program routes it to, or it judges one
    # partition's demos while the program runs it with another's (11 of 60 did under the old rule).
    trainset = [dspy.Example(question=text()).with_inputs("question") for _ in range(60)]
    valset = [dspy.Example(question=text()).with_inputs("question") for _ in range(60)]
    partitions = [Partition(f"p{k}", list(range(k * 20, (k + 1) * 20))) for k in range(3)]
    checks = assign_checks(RandomSplit(), partitions, trainset, valset)
    space = Space.fit([input_text(ex) for ex in trainset])
    train = space([input_text(ex) for ex in trainset])
    router = Router.fit(space, [train[p.indices] for p in partitions], fallback=3)
    routed = router.pick_vectors(space([input_text(ex) for ex in valset]))
    assigned = {j: p for p, js in enumerate(checks) for j in js}
    assert sorted(assigned) == list(range(len(valset)))
    assert all(assigned[j] == routed[j] for j in range(len(valset)) if routed[j] != 3)
    assert sum(r != 3 for r in routed) > len(valset) // 2  # the comparison is not vacuous

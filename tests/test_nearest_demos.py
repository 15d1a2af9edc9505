"""FGO(route="demos", nearest_demos=True): each input runs with its partition's pool demos nearest to it."""

import re

import dspy
import pytest

from conftest import exact, field_value, optimizer_respond, TOY_Z
from dspy_fgo import FGO, Routed, load_routed
from dspy_fgo.route.nearest import NearestDemos
from dspy_fgo.divide.space import Space
from fakes import FakeLM

CATS = ["alpha", "beta"]
TOPICS = ["apples", "bricks", "clouds"]
VAL_ONLY = "dunes"  # a topic only the valset's examples are about


def example(cat, topic, i):
    return dspy.Example(question=f"{cat} question about {topic} item {i}", answer=f"{topic}-{cat}-code",
                        category=cat).with_inputs("question")


def topics_data():
    train = [example(c, t, i) for c in CATS for i, t in enumerate(TOPICS * 2)]
    val = [example(c, t, 20 + i) for c in CATS for i, t in enumerate(TOPICS + [VAL_ONLY, VAL_ONLY])]
    test = [example(c, t, 40 + i) for c in CATS for i, t in enumerate(TOPICS + [VAL_ONLY])]
    return train, val, test


def copies_the_matching_demo(fields, messages):
    """Knows no answer by itself: it copies the answer of a shown demo about the question's topic."""
    question = field_value(messages, "question") or ""
    topic = question.split()[3] if len(question.split()) > 3 else None
    demos = messages[1:-1]  # user/assistant pairs between the system message and the question
    for user, assistant in zip(demos[::2], demos[1::2]):
        if topic and f"about {topic} " in user["content"] and question.split()[0] in user["content"]:
            found = re.search(r"\[\[ ## answer ## \]\]\n(.*?)\n", assistant["content"] + "\n")
            if found:
                return {f: found.group(1) for f in fields}
    return {f: "unknown" for f in fields}


def compile_fgo(**settings):
    train, val, _ = topics_data()
    task_lm = FakeLM(copies_the_matching_demo, model="fake/task")
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond, model="fake/optimizer"),
              partition_by="category", epochs=1, accept_z=TOY_Z, max_demos=1, route="demos", **settings)
    return fgo, fgo.compile(dspy.Predict("question -> answer"), trainset=train, valset=val), task_lm


def accuracy(program, examples, lm):
    with dspy.context(lm=lm):
        return sum(exact(ex, program(**ex.inputs())) for ex in examples) / len(examples)


def test_each_input_runs_with_the_pool_demo_nearest_to_it_including_held_out_ones():
    _, _, test = topics_data()
    _, fixed, lm = compile_fgo(nearest_demos=False)
    fgo, nearest, _ = compile_fgo(nearest_demos=True)
    assert accuracy(fixed, test, lm) <= 0.25  # one demo per partition serves one of its four topics
    assert isinstance(nearest, Routed)
    shown = []

    def counting(fields, messages):
        shown.append(len(messages[1:-1]) // 2)
        return copies_the_matching_demo(fields, messages)

    # The held-out-only topic too: the pool holds the valset's runs.
    assert accuracy(nearest, test, FakeLM(counting, model="fake/task")) == 1.0
    assert fgo.report_.events["demo_pools"] == 2
    assert all(len(expert.demos) > 1 for expert in nearest.experts[:-1])  # pools ...
    assert shown == [1] * len(test)  # ... cut to max_demos=1 demo per call


def test_an_input_never_sees_its_own_demo():
    train, val, _ = topics_data()
    space = Space.fit([ex.question for ex in train + val])
    pool = [{"question": ex.question, "answer": ex.answer} for ex in train]
    nearest = NearestDemos(space, k=2, labels=["answer"], balance=False)
    chosen = nearest.choose(pool, {"question": train[0].question}, ["question"])
    assert train[0].question not in [d["question"] for d in chosen]
    assert chosen[0]["question"] == train[3].question  # the other alpha question about apples
    assert all("about apples" in d["question"] for d in chosen)  # then beta's: the topic outweighs the category


def test_a_saved_nearest_program_loads_back_and_answers_the_same(tmp_path):
    _, _, test = topics_data()
    _, nearest, lm = compile_fgo(nearest_demos=True)
    path = tmp_path / "nearest.json"
    nearest.save(str(path))
    loaded = load_routed(dspy.Predict("question -> answer"), path)
    assert loaded.nearest is not None and loaded.dump_state() == nearest.dump_state()
    with dspy.context(lm=lm):
        assert [loaded(**ex.inputs()).answer for ex in test] == [nearest(**ex.inputs()).answer for ex in test]


def test_the_rescoring_tool_rebuilds_a_nearest_demos_program():
    from types import SimpleNamespace

    from benchmarks.rescore import rebuild_routed_demos
    from dspy_fgo import read_candidate

    train, val, test = topics_data()
    fgo, nearest, lm = compile_fgo(nearest_demos=True)
    cell = {"method": "fgo-nearest", "instructions": read_candidate(nearest), "report": fgo.report_.to_dict()}
    task = SimpleNamespace(train=train, val=val, make_program=lambda: dspy.Predict("question -> answer"))
    rebuilt = rebuild_routed_demos(cell, task)
    assert rebuilt.dump_state() == nearest.dump_state()
    assert accuracy(rebuilt, test, lm) == 1.0


@pytest.mark.parametrize("settings", [dict(route=False), dict(route=True, max_demos=0), dict(route="demos", max_demos=0),
                                      dict(route="demos", nearest_demos="yes")])
def test_nearest_demos_needs_routed_demos(settings):
    with pytest.raises(ValueError, match="nearest_demos"):
        FGO(metric=exact, nearest_demos=settings.pop("nearest_demos", True), **settings)


def test_routed_demos_are_nearest_demos_unless_turned_off():
    assert FGO(metric=exact, route="demos").nearest_demos is True  # the measured default (benchmarks/README.md)
    assert FGO(metric=exact, route="demos", nearest_demos=False).nearest_demos is False
    assert FGO(metric=exact, route="demos", max_demos=0).nearest_demos is False  # no demos: nothing to pool
    assert FGO(metric=exact).nearest_demos is True  # route="auto" weighs routed (nearest) demos
    assert FGO(metric=exact, route=False).nearest_demos is False  # one merged program's fixed demos
    assert FGO(metric=exact, route=True).nearest_demos is True  # routed demos under route=True too
    assert FGO(metric=exact, route=True, nearest_demos=False).nearest_demos is False
    fgo, _, _ = compile_fgo()
    assert fgo.report_.events["demo_pools"] == 2  # the default compile keeps pools


def reused_units(fgo):
    found = [re.search(r"reused (\d+) finished units", n) for n in fgo.report_.notes]
    return next((int(m.group(1)) for m in found if m), 0)


def test_nearest_demos_resume_a_checkpoint_of_fixed_demos_partitions_but_not_its_merges(tmp_path):
    fixed, _, _ = compile_fgo(checkpoint_dir=tmp_path, nearest_demos=False)
    merges = sum(1 for n in fixed.report_.tree if n["children"])
    assert merges >= 1
    nearest, _, _ = compile_fgo(checkpoint_dir=tmp_path, nearest_demos=True)  # not refused ...
    assert reused_units(nearest) == len(nearest.report_.partitions)  # ... its partitions serve as they are
    again, _, _ = compile_fgo(checkpoint_dir=tmp_path, nearest_demos=True)
    assert reused_units(again) == len(again.report_.partitions) + merges  # its own merges, once made, too
    # Partitions read from disk left no runs in memory: the pools run them again, and the stages say so.
    for fgo in (nearest, again):
        report = fgo.report_
        assert report.stage_usage["demos"]["task"]["calls"] > 0
        assert sum(u.get("task", {}).get("calls", 0) for u in report.stage_usage.values()) == report.usage["task"]["calls"]

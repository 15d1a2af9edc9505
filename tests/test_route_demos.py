"""FGO(route="demos"): one merged instruction, and each input runs with its own partition's demos."""

import dspy

from conftest import exact, field_value, make_examples, optimizer_respond, TOY_Z
from dspy_fgo import FGO, Routed, load_routed
from fakes import FakeLM

CATS = ["alpha", "beta"]


def demo_jealous_task(fields, messages):
    """Right only when the prompt's demos are all of the question's category: a mix of both
    categories' demos (what one merged program must carry) serves neither."""
    question = field_value(messages, "question") or ""
    words = question.split()
    shown = " ".join(m["content"] for m in messages[1:-1])  # the demos, between system and the question
    in_demos = {c for c in CATS if f"{c} question" in shown}
    right = len(words) >= 4 and in_demos == {words[0]}
    return {f: f"{words[0]}-{words[3]}" if right else "unknown" for f in fields}


def compile_fgo(trainset, **settings):
    settings.setdefault("accept_z", TOY_Z)
    settings.setdefault("nearest_demos", False)  # each partition's fixed demos (pools: test_nearest_demos.py)
    settings.setdefault("route", False)  # the paper's one merged program, unless a test routes
    task_lm = FakeLM(demo_jealous_task, model="fake/task")
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond, model="fake/optimizer"),
              partition_by="category", epochs=1, **{"max_demos": 2, **settings})
    return fgo, fgo.compile(dspy.Predict("question -> answer"), trainset=trainset), task_lm


def accuracy(program, examples, lm):
    with dspy.context(lm=lm):
        return sum(exact(ex, program(**ex.inputs())) for ex in examples) / len(examples)


def test_each_input_gets_its_own_partitions_demos_and_only_that_scores_100():
    trainset, unseen = make_examples(CATS, per_category=6), make_examples(CATS, per_category=9)[6:]
    merged_fgo, merged, lm = compile_fgo(trainset)
    routed_fgo, routed, _ = compile_fgo(trainset, route="demos")
    assert accuracy(merged, trainset, lm) <= 0.5  # one program's demos serve one category at most
    assert isinstance(routed, Routed)
    assert accuracy(routed, trainset, lm) == 1.0
    assert accuracy(routed, unseen, lm) == 1.0  # unseen inputs go to their category's demos
    # Every expert has the same instruction: only the demos are routed.
    assert len({p.signature.instructions for _, p in routed.named_predictors()}) == 1
    assert routed_fgo.report_.selection["route"].startswith("demos: ")
    assert "instructions unchanged" in routed_fgo.report_.selection["scores"]
    assert "route: demos: each input runs with its nearest partition's demos (2 of 2" in routed_fgo.report_.summary()
    assert all(not k.endswith("::demos") for n in routed_fgo.report_.tree for k in n["candidate"] if n["children"])


def test_a_merge_whose_instructions_agree_costs_no_task_call():
    # The children's texts are the same, and each check runs with its own partition's demos: the
    # partitions already ran exactly those, so the merge node is scored from the evaluation cache.
    trainset = make_examples(CATS, per_category=6)
    plain, _, _ = compile_fgo(trainset)
    routed, _, _ = compile_fgo(trainset, route="demos")
    assert plain.report_.stage_usage["merge"]["task"]["calls"] > 0  # pooled demos are new prompts
    assert routed.report_.stage_usage["merge"].get("task", {}).get("calls", 0) == 0
    assert routed.report_.root["made_by"] == "identical"


def test_save_and_load_round_trip_and_unlike_inputs_get_the_fallback(tmp_path):
    _, routed, lm = compile_fgo(make_examples(CATS, per_category=6), route="demos")
    path = tmp_path / "routed.json"
    routed.save(str(path))
    loaded = load_routed(dspy.Predict("question -> answer"), path)
    probes = make_examples(CATS, per_category=9) + [dspy.Example(question="").with_inputs("question")]
    with dspy.context(lm=lm):
        assert [loaded(**ex.inputs()).answer for ex in probes] == [routed(**ex.inputs()).answer for ex in probes]
    assert loaded.dump_state() == routed.dump_state()
    fallback = routed.experts[routed.router.pick({"question": ""})]
    assert len(fallback.demos) == 2  # both partitions' demos, interleaved up to max_demos
    assert {d["question"].split()[0] for d in fallback.demos} == set(CATS)


def test_without_demos_route_demos_is_the_merged_program():
    fgo, optimized, lm = compile_fgo(make_examples(CATS, per_category=6), route="demos", max_demos=0)
    assert not isinstance(optimized, Routed) and not optimized.demos  # nothing to route: one plain program
    assert "route" not in fgo.report_.selection


def test_the_rescoring_tool_rebuilds_the_same_routed_program_from_a_cell():
    from types import SimpleNamespace

    from benchmarks.rescore import rebuild_routed_demos
    from dspy_fgo import read_candidate

    trainset = make_examples(CATS, per_category=6)
    fgo, routed, lm = compile_fgo(trainset, route="demos")
    cell = {"method": "fgo-demos", "instructions": read_candidate(routed), "report": fgo.report_.to_dict()}
    task = SimpleNamespace(train=trainset, make_program=lambda: dspy.Predict("question -> answer"))
    rebuilt = rebuild_routed_demos(cell, task)
    assert rebuilt.dump_state() == routed.dump_state()
    # A route=True cell with an expert per partition is the same kind of program; without its tree, or
    # with experts for the routed partitions only (before demos were routed there), it is not rebuilt.
    as_route = {**cell, "report": {**cell["report"], "settings": {"route": True}}}
    assert rebuild_routed_demos(as_route, task).dump_state() == routed.dump_state()
    assert rebuild_routed_demos({**cell, "report": {"settings": {"route": True}}}, task) is None
    fewer = {k: v for k, v in cell["instructions"].items() if not k.startswith("experts[1]")}
    assert rebuild_routed_demos({**as_route, "instructions": fewer}, task) is None


def test_route_auto_routes_demos_only_where_that_clearly_beats_one_merged_program():
    mixed = make_examples(CATS, per_category=6)
    fgo, optimized, lm = compile_fgo(mixed, route="auto")
    assert isinstance(optimized, Routed) and accuracy(optimized, mixed, lm) == 1.0
    assert fgo.report_.selection["route"].startswith("auto: routed demos")
    assert fgo.report_.selection["scores"]["merged"] <= 0.5 < fgo.report_.selection["scores"]["routed demos"]

    # One kind of input: routing its demos gains nothing, and one plain program is returned.
    single = [ex for ex in make_examples(CATS, per_category=12) if ex.category == "alpha"]
    task_lm = FakeLM(demo_jealous_task, model="fake/task")
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond, model="fake/optimizer"),
              partition_by="random", n_partitions=2, epochs=1, max_demos=2, route="auto", accept_z=TOY_Z)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=single)
    assert not isinstance(optimized, Routed) and len(optimized.demos) == 2
    assert fgo.report_.selection["route"].startswith("auto: the merged program")
    assert accuracy(optimized, single, task_lm) == 1.0

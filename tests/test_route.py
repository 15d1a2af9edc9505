"""FGO(route=True): route where no merged text serves every partition, stay merged where one does."""

import json

import dspy
import pytest

from conftest import RULE, exact, field_value, make_examples, objective, optimizer_respond, TOY_Z
from dspy_fgo import FGO, Routed, load_routed
from fakes import FakeLM

CATS = ["alpha", "beta"]


def jealous_task(fields, messages):
    """Right only when the instruction states the question's rule and no other: two categories that
    need contradictory instructions, so no single text can score 100 % on both."""
    words = (field_value(messages, "question") or "").split()
    if len(words) < 4:
        return {f: "unknown" for f in fields}
    category, number = words[0], words[3]
    rules = set(RULE.findall(objective(messages)))
    answer = f"{category}-{number}" if rules == {category} else "unknown"
    return {f: answer for f in fields}


def compile_fgo(task_lm, trainset, **settings):
    settings.setdefault("accept_z", TOY_Z)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond), partition_by="category",
              epochs=1, **settings)
    return fgo, fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)


def accuracy(program, examples, lm):
    with dspy.context(lm=lm):
        return sum(exact(ex, program(**ex.inputs())) for ex in examples) / len(examples)


def test_contradictory_partitions_are_routed_and_only_routing_scores_100():
    task_lm = FakeLM(jealous_task)
    trainset, unseen = make_examples(CATS, per_category=6), make_examples(CATS, per_category=9)[6:]
    merged_fgo, merged = compile_fgo(task_lm, trainset)
    routed_fgo, routed = compile_fgo(task_lm, trainset, route=True)

    assert accuracy(merged, trainset, task_lm) < 1.0  # one text cannot hold both rules alone
    assert isinstance(routed, Routed)
    assert accuracy(routed, trainset, task_lm) == 1.0
    assert accuracy(routed, unseen, task_lm) == 1.0  # inputs it never saw go to their category's expert
    # The returned single program is one partition's specialist; the other partition keeps its own.
    leaves = [n for n in routed_fgo.report_.tree if not n["children"]]
    assert sorted(str(n["route"]["routes"]) for n in leaves) == ["False", "True"]
    won = next(n["route"] for n in leaves if n["route"]["routes"])
    assert won["gain_examples"] >= won["needs"]
    assert routed_fgo.report_.selection["returned"] == "routed"
    assert routed_fgo.report_.events["partitions_routed"] == 1
    assert "1 of 2 partitions keep their own specialist" in routed_fgo.report_.summary()
    # An ordinary DSPy module: every expert's predictor is visible (one per partition, each with its
    # partition's demos, then the fallback for inputs unlike both), dspy.Evaluate runs it.
    assert [name for name, _ in routed.named_predictors()] == ["experts[0]", "experts[1]", "experts[2]"]
    with dspy.context(lm=task_lm):
        result = dspy.Evaluate(devset=unseen, metric=exact, display_progress=False)(routed)
    assert result.score == 100.0


def needs_own_demo(fields, messages):
    """Right only when a demo of the question's own category is in the prompt."""
    words = (field_value(messages, "question") or "").split()
    shown = " ".join(m["content"] for m in messages[1:-1])
    right = len(words) >= 4 and f"{words[0]} question number" in shown
    return {f: f"{words[0]}-{words[3]}" if right else "unknown" for f in fields}


def test_route_true_runs_each_input_with_its_own_partitions_demos():
    # One demo fits in a merged prompt, so a single program serves one category; with one check per
    # partition no specialist can win the routing margin. Routed demos serve both anyway.
    task_lm = FakeLM(needs_own_demo)
    trainset, unseen = make_examples(CATS, per_category=3), make_examples(CATS, per_category=9)[3:]
    fgo, routed = compile_fgo(task_lm, trainset, route=True, max_demos=1)
    assert accuracy(routed, unseen, task_lm) == 1.0
    assert fgo.report_.events.get("partitions_routed", 0) == 0
    assert "route=True" in " ".join(fgo.report_.notes)


def test_save_and_load_round_trip_as_json(tmp_path):
    task_lm = FakeLM(jealous_task)
    trainset = make_examples(CATS, per_category=6)
    _, routed = compile_fgo(task_lm, trainset, route=True)
    path = tmp_path / "routed.json"
    routed.save(str(path))
    state = json.loads(path.read_text())  # plain JSON: no pickle anywhere
    assert state["fgo_router"]["space"]["kind"] == "tfidf"
    loaded = load_routed(dspy.Predict("question -> answer"), path)
    probes = make_examples(CATS, per_category=9) + [dspy.Example(question="").with_inputs("question")]
    with dspy.context(lm=task_lm):
        assert [loaded(**ex.inputs()).answer for ex in probes] == [routed(**ex.inputs()).answer for ex in probes]
    assert [loaded.router.pick(ex.inputs()) for ex in probes] == [routed.router.pick(ex.inputs()) for ex in probes]
    assert loaded.dump_state() == routed.dump_state()
    # DSPy's own load() on a routed program restores the router too, not only the experts.
    loaded.router.centroids = loaded.router.centroids[::-1]
    loaded.load(str(path))
    assert loaded.dump_state() == routed.dump_state()
    with pytest.raises(ValueError, match="not a routed FGO program"):
        dspy.Predict("question -> answer").save(str(tmp_path / "plain.json"))
        load_routed(dspy.Predict("question -> answer"), tmp_path / "plain.json")


def test_empty_or_unlike_inputs_go_to_the_fallback_without_error():
    task_lm = FakeLM(jealous_task)
    _, routed = compile_fgo(task_lm, make_examples(CATS, per_category=6), route=True)
    fallback = routed.router.fallback
    assert fallback == len(routed.experts) - 1
    for text in ["", "   ", "zzz qqq completely different words"]:
        assert routed.router.pick({"question": text}) == fallback
    with dspy.context(lm=task_lm):
        routed(question="")  # answered by the fallback, no exception
    assert any(routed.router.pick({"question": f"{c} question number 7 about {c} things"}) != fallback for c in CATS)


def test_routing_is_deterministic():
    task_lm = FakeLM(jealous_task)
    trainset = make_examples(CATS, per_category=6)
    first = compile_fgo(task_lm, trainset, route=True, seed=3)[1]
    second = compile_fgo(FakeLM(jealous_task), trainset, route=True, seed=3)[1]
    assert first.dump_state() == second.dump_state()


def test_a_merge_that_holds_is_not_routed(task_lm, prompt_lm):
    # The ordinary toy world: the rules do not conflict, so the merged text serves both partitions.
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1,
              route=True)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(CATS, per_category=6))
    # Each input still runs with its own partition's demos, all under the one merged instruction.
    assert isinstance(optimized, Routed) and fgo.report_.selection["returned"] != "routed"
    assert len({p.signature.instructions for _, p in optimized.named_predictors()}) == 1
    assert fgo.report_.root["made_by"].startswith("llm_merge")
    assert all(n["route"]["routes"] is False for n in fgo.report_.tree if not n["children"])
    assert fgo.report_.events["partitions_kept_merged"] == 2


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_route_must_be_false_true_or_demos(bad):
    with pytest.raises(ValueError, match="route must be one of"):
        FGO(accept_z=TOY_Z, metric=exact, route=bad)


def jealous_agent(fields, messages):
    """A ReAct agent whose extractor has the jealous rule: contradictory instructions again."""
    if "next_tool_name" in fields:
        return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
    return jealous_task(fields, messages) | {f: "reasoned" for f in fields if f != "answer"}


def test_a_react_agent_is_routed_and_stays_an_agent():
    def lookup(key: str) -> str:
        """Look up a key."""
        return key

    agent = dspy.ReAct("question -> answer", tools=[lookup], max_iters=2)
    task_lm = FakeLM(jealous_agent)
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond), partition_by="category",
              epochs=1, route=True)
    trainset = make_examples(CATS, per_category=6)
    routed = fgo.compile(agent, trainset=trainset)
    assert isinstance(routed, Routed) and all(isinstance(e, dspy.ReAct) for e in routed.experts)
    assert accuracy(routed, trainset, task_lm) == 1.0


@pytest.mark.parametrize("nearest_demos", [False, True])
def test_route_reuses_a_demo_routed_compiles_checkpoint(tmp_path, nearest_demos):
    """Routing is decided after the merge: a routed compile reuses every unit of a ``route="demos"``
    one, whose merges judged instructions with routed demos as its own do (this is how the
    benchmark's fgo-route cell shares the fgo-nearest cell's work)."""
    trainset = make_examples(CATS, per_category=6)
    compile_fgo(FakeLM(jealous_task), trainset, checkpoint_dir=tmp_path, route="demos",
                nearest_demos=nearest_demos)
    optimizer = FakeLM(optimizer_respond)
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=FakeLM(jealous_task), prompt_model=optimizer, partition_by="category",
              epochs=1, checkpoint_dir=tmp_path, route=True, nearest_demos=nearest_demos)
    routed = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)
    assert isinstance(routed, Routed) and optimizer.calls == 0  # every partition and merge came from disk


def test_route_true_routes_instructions_with_each_partitions_nearest_demos(tmp_path):
    """Under route=True demos are nearest demos by default: a routed specialist keeps its
    partition's pool (each input sees its max_demos nearest), as the merged experts do."""
    task_lm = FakeLM(jealous_task)
    trainset = make_examples(CATS, per_category=6)
    fgo, routed = compile_fgo(task_lm, trainset, route=True, max_demos=2)
    assert fgo.nearest_demos and routed.nearest is not None and routed.nearest.k == 2
    assert fgo.report_.events["partitions_routed"] >= 1
    pools = [len(p.demos) for expert in routed.experts[:-1] for _, p in expert.named_predictors()]
    assert min(pools) > 2  # every partition's expert, routed specialist included, holds a pool
    unseen = make_examples(CATS, per_category=9)[6:]
    assert accuracy(routed, unseen, task_lm) == 1.0
    path = tmp_path / "routed.json"
    routed.save(str(path))
    loaded = load_routed(dspy.Predict("question -> answer"), path)
    assert loaded.nearest is not None and loaded.dump_state() == routed.dump_state()
    assert accuracy(loaded, unseen, task_lm) == 1.0


@pytest.mark.parametrize("limit", [3, 40])
def test_route_under_a_budget_returns_a_program(limit):
    task_lm = FakeLM(jealous_task)
    fgo, program = compile_fgo(task_lm, make_examples(CATS, per_category=6), route=True, max_lm_calls=limit)
    with dspy.context(lm=task_lm):
        program(question="alpha question number 1 about alpha things")
    assert "budget reached" in " ".join(fgo.report_.notes)


def word_counts(texts):
    """A user's embedder: counts of a few words (enough to tell the categories apart)."""
    vocabulary = ["alpha", "beta", "question", "things"]
    return [[text.split().count(word) for word in vocabulary] for text in texts]


def test_a_user_embedder_routes_and_must_be_given_again_at_load(tmp_path):
    task_lm = FakeLM(jealous_task)
    trainset = make_examples(CATS, per_category=6)
    _, routed = compile_fgo(task_lm, trainset, route=True, embedder=word_counts)
    assert accuracy(routed, trainset, task_lm) == 1.0
    path = tmp_path / "routed.json"
    routed.save(str(path))
    assert json.loads(path.read_text())["fgo_router"]["space"] == {"kind": "embedder"}
    with pytest.raises(ValueError, match="embedder"):
        load_routed(dspy.Predict("question -> answer"), path)
    loaded = load_routed(dspy.Predict("question -> answer"), path, embedder=word_counts)
    assert [loaded.router.pick(ex.inputs()) for ex in trainset] == [routed.router.pick(ex.inputs()) for ex in trainset]


def test_a_routed_call_shows_its_own_expert_in_inspect_history(capsys):
    task_lm = FakeLM(jealous_task)
    _, routed = compile_fgo(task_lm, make_examples(CATS, per_category=6), route=True)
    with dspy.context(lm=task_lm):
        for category in CATS:
            routed(question=f"{category} question number 7 about {category} things")
            system = task_lm.history[-1]["messages"][0]["content"]
            assert set(RULE.findall(system)) == {category}  # the expert this input was routed to
    dspy.inspect_history(n=1)
    assert "RULE-beta" in capsys.readouterr().out


class RuleInner(dspy.teleprompt.Teleprompter):
    """An inner teleprompter that finds its partition's rule: the contradictory world again."""

    def __init__(self, seed):
        super().__init__()

    def compile(self, student, *, trainset, valset=None):
        program = student.deepcopy()
        rule = f"RULE-{trainset[0].category}"
        for _, predictor in program.named_predictors():
            predictor.signature = predictor.signature.with_instructions(f"{predictor.signature.instructions} {rule}")
        return program


def test_route_true_routes_what_an_inner_teleprompter_found():
    task_lm = FakeLM(jealous_task)
    trainset, unseen = make_examples(CATS, per_category=6), make_examples(CATS, per_category=9)[6:]
    fgo, routed = compile_fgo(task_lm, trainset, route=True, inner=RuleInner)
    assert isinstance(routed, Routed) and fgo.report_.selection["returned"] == "routed"
    assert fgo.report_.events["partitions_routed"] >= 1
    assert accuracy(routed, unseen, task_lm) == 1.0

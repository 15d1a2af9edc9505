"""FGO end to end on the toy world (fake LMs): divide, optimize, merge, select, report."""

import json

import dspy
import pytest

from conftest import RULE, exact, make_examples, task_respond, TOY_Z
from dspy_fgo import FGO, Report, read_candidate
from dspy_fgo.merge import MERGE_ROUNDS
from dspy_fgo.significance import Z
from fakes import FakeLM

CATS = ["alpha", "beta", "gamma", "delta"]


def compile_fgo(task_lm, prompt_lm, trainset, student=None, **settings):
    student = student or dspy.Predict("question -> answer")
    settings.setdefault("partition_by", "category")
    settings.setdefault("accept_z", TOY_Z)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, **settings)
    return fgo, fgo.compile(student, trainset=trainset)


def test_learns_every_category_and_reports(task_lm, prompt_lm):
    trainset = make_examples(CATS)
    fgo, optimized = compile_fgo(task_lm, prompt_lm, trainset, epochs=2)
    task_calls, optimizer_calls = task_lm.calls, prompt_lm.calls
    instruction = optimized.signature.instructions
    assert set(RULE.findall(instruction)) == set(CATS)
    with dspy.context(lm=task_lm):
        assert all(exact(ex, optimized(**ex.inputs())) for ex in trainset)

    report = fgo.report_
    assert [p.name for p in report.partitions] == CATS  # in order of first appearance
    assert all(p.score_before == 0.0 and p.score_after == 1.0 for p in report.partitions)
    assert report.root["score"] == 1.0 and sorted(report.root["examples"]) == list(range(len(trainset)))
    assert report.selection["returned"] == "root"
    # Usage per role matches what the fake LMs actually served.
    assert report.usage["task"]["calls"] == task_calls
    assert report.usage["optimizer"]["calls"] == optimizer_calls
    assert report.usage["optimizer"]["prompt_tokens"] > 0
    assert report.usage["optimizer"]["peak_prompt_tokens"] <= report.usage["optimizer"]["prompt_tokens"]
    assert set(report.timings) == {"divide", "optimize", "demos", "merge", "select"}  # route="auto" pools demos
    # Each stage's share of the LM use: together they are the whole compile's, and the merge's
    # optimizer calls are the merge calls its tree records.
    for role in ("task", "optimizer"):
        for key in ("calls", "billed_calls", "prompt_tokens", "completion_tokens"):
            assert sum(u.get(role, {}).get(key, 0) for u in report.stage_usage.values()) == report.usage[role][key]
    assert report.stage_usage["merge"]["optimizer"]["calls"] == sum(n["merge_calls"] for n in report.tree) > 0
    assert report.stage_usage["optimize"]["task"]["calls"] > 0 and "optimizer" not in report.stage_usage["divide"]
    json.dumps(report.to_dict())
    assert "partition" in report.summary() and "merge: task" in report.summary()


class CachingFakeLM(FakeLM):
    """Reports half of every prompt as served from the provider's prompt cache, as OpenAI and
    llama.cpp do in ``usage.prompt_tokens_details.cached_tokens``."""

    cached = 0

    def forward(self, prompt=None, messages=None, **kwargs):
        response = super().forward(prompt=prompt, messages=messages, **kwargs)
        half = response.usage["prompt_tokens"] // 2
        response.usage["prompt_tokens_details"] = {"cached_tokens": half}
        with self._lock:
            self.cached += half
        return response


def test_prompt_tokens_served_from_the_providers_cache_are_counted(prompt_lm):
    task = CachingFakeLM(task_respond, model="fake/task")
    fgo, _ = compile_fgo(task, prompt_lm, make_examples(CATS[:2]), epochs=1)
    usage = fgo.report_.usage
    assert usage["task"]["cached_prompt_tokens"] == task.cached > 0
    assert usage["optimizer"]["cached_prompt_tokens"] == 0
    assert sum(u["task"]["cached_prompt_tokens"] for u in fgo.report_.stage_usage.values() if "task" in u) == task.cached


def test_student_is_untouched(task_lm, prompt_lm):
    student = dspy.Predict("question -> answer")
    before = read_candidate(student)
    _, optimized = compile_fgo(task_lm, prompt_lm, make_examples(CATS[:2]), student=student, epochs=1)
    assert read_candidate(student) == before
    assert optimized is not student and read_candidate(optimized) != before


@pytest.mark.parametrize("n,t", [(1, 3), (2, 3), (3, 3), (6, 3), (10, 3), (30, 3), (3, 2), (4, 2), (7, 2)])
def test_tree_shape_and_bounded_fan_in(task_lm, prompt_lm, n, t):
    cats = [f"c{i:02d}" for i in range(n)]
    trainset = make_examples(cats, per_category=2)
    fgo, _ = compile_fgo(task_lm, prompt_lm, trainset, epochs=1, merge_threshold=t)
    tree = fgo.report_.tree
    leaves = [node for node in tree if not node["children"]]
    assert len(leaves) == n
    assert all(len(node["children"]) <= t for node in tree)
    # Every node covers exactly the union of its children's examples; the root covers everything once.
    for node in tree:
        if node["children"]:
            union = sorted(i for c in node["children"] for i in tree[c]["examples"])
            assert node["examples"] == union
    assert tree[-1]["examples"] == list(range(len(trainset)))
    reached, todo = set(), [tree[-1]["id"]]
    while todo:
        node = tree[todo.pop()]
        reached.add(node["id"])
        todo += node["children"]
    assert reached == {node["id"] for node in tree}  # a tree: every node feeds the root
    if n > t:  # recursion: some merge sits above another
        assert max(node["level"] for node in tree) >= 2


def test_merge_node_score_is_validation_on_union(task_lm, prompt_lm):
    trainset = make_examples(CATS)
    fgo, _ = compile_fgo(task_lm, prompt_lm, trainset, epochs=1)
    student = dspy.Predict("question -> answer")
    for node in fgo.report_.tree:
        program = student.deepcopy()
        program.signature = program.signature.with_instructions(node["candidate"]["self"])
        with dspy.context(lm=task_lm):
            scores = [exact(trainset[i], program(**trainset[i].inputs())) for i in node["examples"]]
        assert node["score"] == pytest.approx(sum(scores) / len(scores))


def test_clustering_none_merges_all_at_once(task_lm, prompt_lm):
    fgo, _ = compile_fgo(task_lm, prompt_lm, make_examples([f"c{i}" for i in range(6)], 2), epochs=1, clustering="none")
    merges = [node for node in fgo.report_.tree if node["children"]]
    assert len(merges) == 1 and len(merges[0]["children"]) == 6


@pytest.mark.parametrize("clustering", ["spectral", "bisecting"])
def test_other_clusterings_keep_the_bound(task_lm, prompt_lm, clustering):
    fgo, _ = compile_fgo(task_lm, prompt_lm, make_examples([f"c{i}" for i in range(10)], 2), epochs=1, clustering=clustering)
    assert max(len(node["children"]) for node in fgo.report_.tree) <= 3


def test_a_merge_that_scores_below_its_best_child_is_replaced_by_that_child(task_lm):
    from conftest import losing_merge_respond
    from fakes import FakeLM

    prompt = FakeLM(losing_merge_respond)
    fgo, optimized = compile_fgo(task_lm, prompt, make_examples(CATS[:2]), epochs=1, max_demos=0)
    root = fgo.report_.root
    assert root["made_by"] == "best_child" and root["attempted"] == ["llm_merge"]
    assert max(root["child_scores"]) > max(root["attempts"])
    assert fgo.report_.events["merges_lost_to_best_child"] == 1
    # Asked once per proposal (distinct rollouts), and once more per proposal after a round kept no
    # merge; the same text came back every time, and was scored once.
    assert sum("merged_instruction" in p for p in prompt.prompts) == MERGE_ROUNDS * fgo.proposals
    assert fgo.report_.events["merges_asked_again"] == 1
    assert RULE.findall(optimized.signature.instructions)


@pytest.mark.parametrize("lost, accept_z, kept", [(1, Z, True), (4, Z, False), (1, 0.0, False), (0, 0.0, True)])
def test_a_merge_is_kept_unless_clearly_worse_than_its_best_child(lost, accept_z, kept):
    from fakes import FakeLM

    from dspy_fgo.run.accounting import Counters, Meters
    from types import SimpleNamespace

    from dspy_fgo.merge import MergeSettings, ProgressiveMerge
    from dspy_fgo.optimize.prompts import Budget
    from dspy_fgo.run.runtime import Runtime

    student = dspy.Predict("question -> answer")
    items = [(i, ex) for i, ex in enumerate(make_examples(CATS[:2], per_category=6))]
    prompt = FakeLM(lambda fields, messages: {f: "MERGED RULE-alpha RULE-beta" for f in fields})
    rt = Runtime(student=student, metric=exact, task_lm=None, prompt_lm=prompt, meters=Meters(), num_threads=1,
                 max_errors=None)

    def item_scores(candidate, scored):  # the merge loses ``lost`` of the 12 checks its best child wins
        merged = "MERGED" in candidate["self"]
        return [0.0 if merged and i < lost else 1.0 if "alpha" in candidate["self"] or merged else 0.5
                for i, _ in scored]

    routed = SimpleNamespace(kind="test", item_scores=item_scores)
    merger = ProgressiveMerge(rt, lambda keys: [items[k] for k in keys], None, MergeSettings(accept_z=accept_z),
                              budget=Budget(), counters=Counters(), routed=routed)
    leaves = [merger.leaf({"self": f"Answer. RULE-{c}"}, list(range(6 * i, 6 * i + 6)), 1.0, c,
                          checks=list(range(6 * i, 6 * i + 6))) for i, c in enumerate(CATS[:2])]
    root = merger.run(leaves)
    assert (root.made_by == "llm_merge") is kept
    assert root.candidate["self"] == ("MERGED RULE-alpha RULE-beta" if kept else "Answer. RULE-alpha")


def test_when_the_llm_merge_loses_the_best_childs_text_keeps_every_childs_demos_at_no_call(task_lm):
    from conftest import optimizer_respond
    from fakes import FakeLM

    def bad_merge(fields, messages):
        if "merged_instruction" in fields:
            return {f: "Answer the question briefly." for f in fields}
        return optimizer_respond(fields, messages)

    prompt = FakeLM(bad_merge)
    fgo, optimized = compile_fgo(task_lm, prompt, make_examples(CATS[:2]), epochs=1, max_demos=2, route=False)
    root = fgo.report_.root
    assert root["attempted"] == ["pooled_demos", "llm_merge"] and root["made_by"] == "pooled_demos"
    assert sum("merged_instruction" in p for p in prompt.prompts) == MERGE_ROUNDS * fgo.proposals
    children = [fgo.report_.tree[c]["candidate"]["self"] for c in root["children"]]
    assert root["candidate"]["self"] in children  # a child's text, not the merge's
    shown = {demo["question"].split()[0] for demo in json.loads(root["candidate"]["self::demos"])}
    assert shown == set(CATS[:2])  # both partitions' demos


def test_on_a_tie_the_shortest_prompt_is_returned(task_lm, prompt_lm):
    # The valset holds only alpha questions: the root (both rules) and alpha's node tie on it.
    trainset, valset = make_examples(CATS[:2]), make_examples(CATS[:1], per_category=3)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1,
              max_demos=0, accept_z=TOY_Z)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    scores = fgo.report_.selection["scores"]
    assert scores["root"] == max(scores.values()) and fgo.report_.selection["returned"] != "root"
    assert RULE.findall(optimized.signature.instructions) == ["alpha"]


def test_valset_is_used_for_the_final_choice(task_lm, prompt_lm):
    trainset, valset = make_examples(CATS[:2]), make_examples(CATS[:2], per_category=1)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    assert fgo.report_.selection["on"] == "valset"


class TwoStage(dspy.Module):
    def __init__(self):
        super().__init__()
        self.think = dspy.ChainOfThought("question -> notes")
        self.answer = dspy.Predict("question, notes -> answer")

    def forward(self, question):
        notes = self.think(question=question).notes
        return self.answer(question=question, notes=notes)


def test_multi_predictor_program_optimizes_each_instruction(task_lm, prompt_lm):
    fgo, optimized = compile_fgo(task_lm, prompt_lm, make_examples(CATS[:3]), student=TwoStage(), epochs=1)
    candidate = read_candidate(optimized)
    assert set(candidate) == {"think.predict", "answer"}
    assert set(RULE.findall(candidate["answer"])) == set(CATS[:3])
    assert all(set(node["candidate"]) == {"think.predict", "answer"} for node in fgo.report_.tree)


def test_save_load_round_trip(tmp_path, task_lm, prompt_lm):
    fgo, optimized = compile_fgo(task_lm, prompt_lm, make_examples(CATS[:2]), epochs=1)
    optimized.save(str(tmp_path / "program.json"))
    loaded = dspy.Predict("question -> answer")
    loaded.load(str(tmp_path / "program.json"))
    assert read_candidate(loaded) == read_candidate(optimized)
    fgo.report_.save(tmp_path / "report.json")
    again = Report.load(tmp_path / "report.json")
    assert again.to_dict() == json.loads(json.dumps(fgo.report_.to_dict()))


def test_same_seed_same_result(prompt_lm):
    from conftest import task_respond
    from fakes import FakeLM

    def run():
        fgo = FGO(metric=exact, task_model=FakeLM(task_respond), prompt_model=prompt_lm, partition_by=None,
                  n_partitions=3, seed=7, epochs=1, num_threads=4)
        optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples([f"c{i}" for i in range(6)], 2))
        report = fgo.report_.to_dict()
        return read_candidate(optimized), [p["name"] for p in report["partitions"]], report["tree"]

    assert run() == run()


def test_batch_critique_makes_one_call_per_partition_and_epoch(task_lm, prompt_lm):
    fgo, optimized = compile_fgo(task_lm, prompt_lm, make_examples(CATS), epochs=1, critique="batch")
    assert set(RULE.findall(optimized.signature.instructions)) == set(CATS)
    critique_calls = [p for p in prompt_lm.prompts if "[[ ## runs ## ]]" in p]
    assert len(critique_calls) == len(CATS)  # one per partition (one epoch), not one per run
    assert not [p for p in prompt_lm.prompts if "[[ ## run ## ]]" in p]

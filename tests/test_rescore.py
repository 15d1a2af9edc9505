"""Rescoring finished cells on a larger test split (fake LMs for the plumbing)."""

import json

import dspy
import pytest

from benchmarks import rescore, run
from benchmarks.methods import Setup
from benchmarks.tasks import TASKS


def test_rescoring_rebuilds_each_cells_program_and_scores_it_on_more_questions(tmp_path):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized,fgo,knn-fewshot,fgo-demos", "--n-train", "1", "--n-val", "1",
              "--n-test", "2", "--out", str(out)])
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "5", "--reference", "unoptimized"]) == 0
    results = {p.stem: json.loads(p.read_text()) for p in (out / "rescore-n5").glob("bbh15-*.json")}
    assert set(results) == {"bbh15-predict-unoptimized-seed0", "bbh15-predict-fgo-seed0",
                            "bbh15-predict-knn-fewshot-seed0", "bbh15-predict-fgo-demos-seed0"}
    for result in results.values():
        assert result["n_test"] == 5 * 15 and len(result["scores"]) == 75
        # The cell's own questions are the first of each group: the rebuilt program scores them as the cell did.
        assert result["same_questions_accuracy"] == result["cell_test_accuracy"]
    summary = json.loads((out / "rescore-n5" / "summary.json").read_text())
    assert {r["method"] for r in summary["rows"]} == {"unoptimized", "fgo", "knn-fewshot", "fgo-demos"}
    assert "verdict" in next(r for r in summary["rows"] if r["method"] == "fgo")


def test_seeds_can_be_rescored_one_run_at_a_time_and_all_join_the_summary(tmp_path):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "fgo", "--seeds", "0,1", "--n-train", "1", "--n-val", "1", "--n-test", "2",
              "--out", str(out)])
    rescored = out / "rescore-n3"
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--seeds", "1", "--reference", "fgo"]) == 0
    assert [p.stem for p in rescored.glob("bbh15-*.json")] == ["bbh15-predict-fgo-seed1"]
    assert "Not rescored yet (other seeds): bbh15-predict-fgo-seed0" in (rescored / "summary.md").read_text()
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--seeds", "0", "--reference", "fgo"]) == 0
    summary = json.loads((rescored / "summary.json").read_text())
    assert [sorted(r["seeds"]) for r in summary["rows"] if r["method"] == "fgo"] == [[0, 1]]


def test_a_rescored_cell_records_the_code_its_run_started_with(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized,fgo", "--n-train", "1", "--n-val", "1", "--n-test", "1",
              "--out", str(out)])
    commits = iter(["started-with", "committed-while-running", "and-again"])
    monkeypatch.setattr(run, "code_version", lambda: next(commits))
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "2", "--reference", "unoptimized"]) == 0
    versions = {json.loads(p.read_text())["code_version"] for p in (out / "rescore-n2").glob("bbh15-*.json")}
    assert versions == {"started-with"}


def test_cells_rescored_in_another_run_join_the_summary_on_the_same_questions(tmp_path, monkeypatch):
    kept, new = tmp_path / "kept", tmp_path / "new"
    for out, method in ((kept, "unoptimized"), (new, "fgo")):
        run.main(["--fake", "--methods", method, "--n-train", "1", "--n-val", "1", "--n-test", "2", "--out", str(out)])
        assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--reference", "unoptimized"]) == 0

    def no_model(args):  # every cell is rescored already: summarizing again starts no model server
        raise AssertionError("a model was started")

    monkeypatch.setattr(run, "models", no_model)
    assert rescore.main(["--fake", "--out", str(new), "--n-test", "3", "--reference", "unoptimized",
                         "--compare-with", str(kept)]) == 0
    rows = json.loads((new / "rescore-n3" / "summary.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"unoptimized", "fgo"}
    assert next(r for r in rows if r["method"] == "fgo")["verdict"] in ("tie", "ahead", "behind")
    assert "rescored cells, on the same questions" in (new / "rescore-n3" / "summary.md").read_text()
    # Other questions cannot be compared: the run stops and says so.
    other = next((kept / "rescore-n3").glob("*unoptimized*.json"))
    result = json.loads(other.read_text())
    result["scores"] = {k + "x": v for k, v in result["scores"].items()}
    other.write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="other questions"):
        rescore.main(["--fake", "--out", str(new), "--n-test", "3", "--compare-with", str(kept)])


def test_a_program_the_cell_does_not_hold_is_skipped_not_guessed():
    task = TASKS["bbh15"](n_train=1, n_val=1, n_test=1)
    setup = Setup(metric=task.metric, task_lm=None, prompt_lm=None, seed=0, num_threads=1)
    routed = {"method": "fgo-route", "instructions": {"experts[0]": "A", "experts[1]": "B"}}
    assert rescore.rebuild(routed, task, setup) is None
    # A route=True cell with an expert per partition (then the fallback) is rebuilt; one from before
    # demos were routed (experts only for the routed partitions) is not.
    tree = [{"id": i, "children": [], "examples": [i]} for i in range(2)]
    report = {"settings": {"route": True}, "tree": tree}
    per_partition = {"method": "fgo-route", "report": report,
                     "instructions": {f"experts[{i}]": f"Rule {i}." for i in range(3)}}
    program = rescore.rebuild(per_partition, task, setup)
    assert [p.signature.instructions for _, p in program.named_predictors()] == ["Rule 0.", "Rule 1.", "Rule 2."]
    assert rescore.rebuild({**per_partition, "instructions": {"experts[0]": "A", "experts[1]": "B"}}, task, setup) is None
    demo = {"question": "q", "answer": "a"}
    plain = {"method": "fgo", "instructions": {"self": "Answer briefly.", "self::demos": json.dumps([demo])}}
    program = rescore.rebuild(plain, task, setup)
    predictor = dict(program.named_predictors())["self"]
    assert predictor.signature.instructions == "Answer briefly."
    assert [d.toDict() for d in predictor.demos] == [demo]


def test_first_per_group_finds_a_cells_own_questions_in_a_larger_split():
    examples = [dspy.Example(task=t, id=i) for t in "ab" for i in range(4)]
    firsts = rescore.first_per_group(examples, lambda ex: ex.task, 2)
    assert [(ex.task, ex.id) for ex in firsts] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def _runs(accuracies, n=200):
    return [{f"q{i}": float(i < acc * n) for i in range(n)} for acc in accuracies]


def test_a_clear_gap_is_ahead_and_a_gap_inside_the_noise_is_a_tie():
    diff, low, high = rescore.bootstrap_difference(_runs([0.60, 0.62, 0.61]), _runs([0.40, 0.41, 0.42]))
    assert round(diff) == 20 and 0 < low < diff < high
    # Two points on 200 questions, with seeds spread over four: the interval holds 0.
    diff, low, high = rescore.bootstrap_difference(_runs([0.40, 0.44, 0.42]), _runs([0.38, 0.42, 0.40]))
    assert round(diff) == 2 and low < 0 < high
    rows = rescore.summary([{"method": m, "seed": s, "test_accuracy": acc, "n_test": 200, "scores": runs}
                            for m, accs in (("a", [0.60, 0.62, 0.61]), ("b", [0.40, 0.41, 0.42]))
                            for s, (acc, runs) in enumerate(zip(accs, _runs(accs)))], reference="b")
    assert next(r for r in rows if r["method"] == "a")["verdict"] == "ahead"


def test_a_merge_tree_node_is_rescored_as_its_own_method(tmp_path):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized,fgo", "--n-train", "1", "--n-val", "1", "--n-test", "2",
              "--out", str(out)])
    cell = json.loads((out / "cells" / "bbh15-predict-fgo-seed0.json").read_text())
    node = cell["report"]["tree"][0]
    node["candidate"] = {"self": "The text node 0 held."}  # unlike the program the cell returned
    made = rescore.node_cells([cell], [0])
    assert [(c["method"], c["instructions"], c["test_accuracy"]) for c in made] == [
        ("fgo@node0", node["candidate"], None)]
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "2", "--nodes", "0",
                         "--reference", "unoptimized"]) == 0
    result = json.loads((out / "rescore-n2" / "bbh15-predict-fgo@node0-seed0.json").read_text())
    assert result["method"] == "fgo@node0" and result["n_test"] == 2 * 15


def _flaky_rebuild(monkeypatch, failures: int):
    """Programs whose call on one question raises a refused connection ``failures`` times, then answers."""
    real, calls = rescore.rebuild, {}
    monkeypatch.setattr(rescore, "RETRY_PAUSE", 0)

    def rebuild(cell, task, setup):
        program, unlucky = real(cell, task, setup), task.test[0].inputs().toDict()

        def answer(**inputs):
            if inputs == unlucky:
                calls[cell["method"]] = calls.get(cell["method"], 0) + 1
                if calls[cell["method"]] <= failures:
                    raise ConnectionError("Connection refused")
            return program(**inputs)
        return answer
    monkeypatch.setattr(rescore, "rebuild", rebuild)
    return calls


def test_a_question_whose_call_errored_is_asked_again_not_scored_wrong(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized", "--n-train", "1", "--n-val", "1", "--n-test", "2",
              "--out", str(out)])
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--reference", "unoptimized"]) == 0
    cell = out / "rescore-n3" / "bbh15-predict-unoptimized-seed0.json"
    steady = json.loads(cell.read_text())["scores"]
    cell.unlink()
    calls = _flaky_rebuild(monkeypatch, failures=rescore.ATTEMPTS - 1)
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--reference", "unoptimized"]) == 0
    assert calls == {"unoptimized": rescore.ATTEMPTS}  # refused twice, answered the third time
    assert json.loads(cell.read_text())["scores"] == steady


def test_a_cell_whose_call_errors_every_time_is_not_rescored(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized", "--n-train", "1", "--n-val", "1", "--n-test", "2",
              "--out", str(out)])
    _flaky_rebuild(monkeypatch, failures=rescore.ATTEMPTS)
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "3", "--reference", "unoptimized"]) == 1
    assert not (out / "rescore-n3" / "bbh15-predict-unoptimized-seed0.json").exists()
    summary = (out / "rescore-n3" / "summary.md").read_text()
    assert "calls errored on every attempt; run again to resume): bbh15-predict-unoptimized-seed0" in summary


def test_a_run_for_some_methods_keeps_the_others_rescored_cells_in_the_summary(tmp_path):
    out = tmp_path / "bench"
    run.main(["--fake", "--methods", "unoptimized,fgo", "--n-train", "1", "--n-val", "1", "--n-test", "1",
              "--out", str(out)])
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "2", "--methods", "unoptimized",
                         "--reference", "unoptimized"]) == 0
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "2", "--methods", "fgo",
                         "--reference", "unoptimized"]) == 0
    summary = json.loads((out / "rescore-n2" / "summary.json").read_text())
    assert {r["method"] for r in summary["rows"]} == {"unoptimized", "fgo"}
    assert "verdict" in next(r for r in summary["rows"] if r["method"] == "fgo")


def test_ubl_invoices_are_rescored_one_by_one(tmp_path):
    # UBL examples have no BBH task or id: each invoice is still its own question, not one shared key.
    out = tmp_path / "bench"
    run.main(["--fake", "--tasks", "ubl", "--methods", "unoptimized", "--n-train", "1", "--n-val", "1",
              "--n-test", "1", "--out", str(out)])
    assert rescore.main(["--fake", "--out", str(out), "--n-test", "2", "--reference", "unoptimized"]) == 0
    result = json.loads((out / "rescore-n2" / "ubl-predict-unoptimized-seed0.json").read_text())
    assert result["n_test"] == len(result["scores"]) == 2 * 4  # two invoices per layout


def test_two_questions_with_one_name_are_refused():
    task = type("T", (), {"test": [dspy.Example(document="same").with_inputs("document")] * 2})()
    with pytest.raises(ValueError, match="share a name"):
        rescore.score_every_question(None, task, None)

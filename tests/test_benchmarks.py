"""Smoke tests of the benchmark runners with scripted fake LMs (their numbers mean nothing)."""

import json

from benchmarks import run


def test_runner_writes_cells_summary_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--fake", "--methods", "unoptimized,fgo,all-at-once", "--seeds", "0,1", "--n-train", "1",
            "--n-val", "1", "--n-test", "1", "--num-threads", "2", "--out", str(out)]
    assert run.main(argv) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == [
        "bbh15-predict-all-at-once-seed0.json", "bbh15-predict-all-at-once-seed1.json",
        "bbh15-predict-fgo-seed0.json", "bbh15-predict-fgo-seed1.json", "bbh15-predict-unoptimized-seed0.json",
    ]
    cell = json.loads((out / "cells" / "bbh15-predict-fgo-seed0.json").read_text())
    assert cell["n_test"] == 15 and 0 <= cell["test_accuracy"] <= 1
    assert cell["optimizer_usage"]["calls"] > 0 and cell["task_usage"]["calls"] > 0
    assert cell["report"]["method"] == "FGO"
    assert cell["test_usage"]["calls"] == 15 and cell["test_usage"]["prompt_tokens"] > 0  # one call a question
    results = json.loads((out / "results.json").read_text())
    assert {row["method"] for row in results["rows"]} == {"unoptimized", "fgo", "all-at-once"}
    md = (out / "results.md").read_text()
    assert "| bbh15 | fgo | 2 |" in md
    # Where FGO's compile went, stage by stage, from its report.
    optimize = cell["report"]["stage_usage"]["optimize"]["task"]
    assert optimize["billed_calls"] > 0
    assert f"| fgo | 0 | optimize | {cell['report']['timings']['optimize']:.0f} | {optimize['billed_calls']} |" in md
    assert "| fgo | 0 | merge |" in md
    row = next(line for line in md.splitlines() if line.startswith("| bbh15 | fgo | 0 |"))
    assert f"| {cell['test_usage']['prompt_tokens'] / 15:.0f} |" in row  # prompt tokens per test call

    capsys.readouterr()
    assert run.main(argv) == 0  # a rerun redoes nothing
    assert capsys.readouterr().out.count("done before, skipped") == 5


def test_unknown_method_is_refused(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="unknown method"):
        run.main(["--fake", "--methods", "nope", "--out", str(tmp_path)])


def test_epochs_reach_fgo_and_the_baselines_and_are_recorded(tmp_path):
    out = tmp_path / "bench"
    argv = ["--fake", "--methods", "fgo,batch-wise", "--epochs", "1", "--n-train", "1", "--n-val", "1",
            "--n-test", "1", "--out", str(out)]
    assert run.main(argv) == 0
    for method in ("fgo", "batch-wise"):
        cell = json.loads((out / "cells" / f"bbh15-predict-{method}-seed0.json").read_text())
        assert cell["epochs"] == 1 and cell["report"]["settings"]["epochs"] == 1
        assert "--epochs 1" in cell["command"]
        assert cell["code_version"] == run.code_version()  # which code made this cell


def test_max_demos_reaches_every_method_that_gives_demos_and_is_recorded(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    argv = ["--fake", "--methods", "fgo,knn-fewshot", "--max-demos", "1", "--epochs", "0", "--n-train", "2",
            "--n-val", "1", "--n-test", "1", "--out", str(out)]
    assert run.main(argv) == 0
    fgo = json.loads((out / "cells" / "bbh15-predict-fgo-seed0.json").read_text())
    knn = json.loads((out / "cells" / "bbh15-predict-knn-fewshot-seed0.json").read_text())
    assert fgo["max_demos"] == 1 and fgo["report"]["settings"]["max_demos"] == 1
    assert knn["max_demos"] == 1 and knn["note"].startswith("1 nearest")
    assert json.loads((out / "config.json").read_text())["max_demos"] == 1

    import dspy
    from benchmarks.methods import METHODS, Setup

    made = []

    class Recorder:  # stands in for MIPROv2: records its settings, optimizes nothing
        def __init__(self, **kwargs):
            made.append(kwargs)

        def compile(self, student, **kwargs):
            return student

    monkeypatch.setattr(dspy, "MIPROv2", Recorder)
    setup = Setup(metric=None, task_lm=None, prompt_lm=None, seed=0, num_threads=1, max_demos=2)
    for method in ("mipro-demos", "mipro-instructions"):
        METHODS[method](dspy.Predict("question -> answer"), [], [], setup)
    assert [(m["max_bootstrapped_demos"], m["max_labeled_demos"]) for m in made] == [(2, 2), (0, 0)]


def test_knn_fewshot_runs_again_on_another_trainset(tmp_path):
    # Its offline space is fitted on each trainset: vectors from another run's space, of another
    # vocabulary's size, must not come back from DSPy's cache.
    for n_train in ("1", "2"):
        out = tmp_path / f"train{n_train}"
        assert run.main(["--fake", "--methods", "knn-fewshot", "--n-train", n_train, "--n-val", "1",
                         "--n-test", "1", "--out", str(out)]) == 0
        assert (out / "cells" / "bbh15-predict-knn-fewshot-seed0.json").exists()


def test_methods_of_several_runs_combine_into_one_summary(tmp_path):
    from benchmarks import report

    old, new = tmp_path / "old", tmp_path / "new"
    for out, methods in ((old, "unoptimized,fgo"), (new, "fgo")):
        run.main(["--fake", "--methods", methods, "--epochs", "0", "--n-train", "1", "--n-val", "1", "--n-test", "1",
                  "--out", str(out)])
    combined = tmp_path / "headline"
    assert report.main(["--from", f"{old}:unoptimized", "--from", f"{new}:fgo", "--out", str(combined)]) == 0
    md = (combined / "results.md").read_text()
    assert f"fgo ({new})" in md and f"unoptimized ({old})" in md
    assert (combined / "acc_vs_tokens.png").exists()
    import pytest

    with pytest.raises(ValueError, match="comes from both"):  # one method, two versions' seeds: refused
        report.main(["--from", f"{old}:fgo", "--from", f"{new}:fgo", "--out", str(combined)])


def test_runs_that_add_cells_to_one_directory_are_each_recorded_and_a_change_of_settings_is_refused(tmp_path,
                                                                                                    monkeypatch):
    import pytest

    out = tmp_path / "bench"
    common = ["--fake", "--epochs", "0", "--n-train", "1", "--n-val", "1", "--out", str(out)]
    assert run.main(common + ["--methods", "unoptimized", "--n-test", "1"]) == 0
    assert run.main(common + ["--methods", "fgo", "--n-test", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert [r["command"].split("--methods ")[1].split()[0] for r in config["runs"]] == ["unoptimized", "fgo"]
    md = (out / "results.md").read_text()
    assert "--methods unoptimized" in md and "--methods fgo" in md  # the summary names both runs

    def no_model(args):
        raise AssertionError("a refused run started a model server")
    monkeypatch.setattr(run, "models", no_model)
    with pytest.raises(SystemExit, match="other settings.*n_test"):  # another test set: not comparable
        run.main(common + ["--methods", "fgo", "--seeds", "1", "--n-test", "2"])
    assert json.loads((out / "config.json").read_text()) == config
    assert not (out / "cells" / "bbh15-predict-fgo-seed1.json").exists()


def test_code_version_names_the_checked_out_commit():
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    version = run.code_version()
    assert version is not None and version.split("+")[0] == head


def test_code_version_is_dirty_for_edited_code_not_for_edited_docs(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "docs" / "README.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    (tmp_path / "docs" / "README.md").write_text("new\n")
    assert "+dirty" not in run.code_version(tmp_path)
    (tmp_path / "code.py").write_text("x = 2\n")
    assert run.code_version(tmp_path).endswith("+dirty")


def test_benchmark_evaluations_never_send_a_second_copy_of_a_slow_call():
    import importlib

    with run.models(run.parse_args(["--fake"])):
        executor = importlib.import_module("dspy.evaluate.evaluate").ParallelExecutor(num_threads=2)
    assert executor.timeout == 0  # DSPy's default (120 s) re-sends stragglers: UBL's calls take that long


def test_the_agent_task_stops_its_model_at_an_invented_observation(tmp_path):
    out = tmp_path / "bench"
    argv = ["--fake", "--tasks", "ubl-agent", "--methods", "unoptimized", "--n-train", "1", "--n-val", "1",
            "--n-test", "1", "--out", str(out)]
    assert run.main(argv) == 0
    cell = json.loads((out / "cells" / "ubl-agent-predict-unoptimized-seed0.json").read_text())
    assert "[[ ## observation" in cell["task_stop"]


def test_agent_steps_lists_tool_calls_and_flags_runs_missing_from_the_cache(tmp_path, capsys):
    from benchmarks import agent_steps

    trajectory = {"tool_name_0": "search_references", "tool_args_0": {"invoice_id": "x"},
                  "tool_name_1": "search_references", "tool_args_1": {"invoice_id": "x"},
                  "tool_name_2": "finish", "tool_args_2": {}}
    assert agent_steps.tool_calls(trajectory) == [("search_references", '{"invoice_id": "x"}')] * 2 + [("finish", "{}")]

    out = tmp_path / "bench"
    assert run.main(["--fake", "--tasks", "ubl-agent", "--methods", "unoptimized", "--n-train", "1", "--n-val", "1",
                     "--n-test", "1", "--out", str(out)]) == 0
    cell = out / "cells" / "ubl-agent-predict-unoptimized-seed0.json"
    config = json.loads((out / "config.json").read_text())
    config["task_model"] = "openai/never-served"  # nothing cached for it: every run must be flagged, not invented
    (out / "config.json").write_text(json.dumps(config))
    assert agent_steps.main([str(cell)]) == 0
    text = cell.with_suffix(".steps.md").read_text()
    assert text.count("| ") > 4 and "4 runs (4 not in the cache), 0 right" in text


def test_a_resumed_cell_is_marked_and_its_tokens_kept_out_of_ratios(tmp_path):
    from benchmarks.report import aggregate, table

    out = tmp_path / "bench"
    argv = ["--fake", "--methods", "mipro-instructions,all-at-once", "--n-train", "1", "--n-val", "1",
            "--n-test", "1", "--out", str(out)]
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "bbh15-predict-all-at-once-seed0.started").write_text("killed")  # as a killed attempt leaves
    assert run.main(argv) == 0
    assert not list((out / "cells").glob("*.started"))
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert cells["bbh15-predict-all-at-once-seed0"]["resumed"] is True
    assert cells["bbh15-predict-mipro-instructions-seed0"]["resumed"] is False
    rows = {r["method"]: r for r in aggregate(list(cells.values()))}
    assert rows["all-at-once"]["resumed_seeds"] == [0]
    line = next(l for l in table(list(rows.values())).splitlines() if "| all-at-once |" in l)
    columns = [c.strip() for c in line.split("|")[1:-1]]
    assert "(resumed: seed 0) ‡" in columns[6] and columns[-2:] == ["", ""]  # partial figures: no ratios
    reference = next(l for l in table(list(rows.values())).splitlines() if "| mipro-instructions |" in l)
    assert [c.strip() for c in reference.split("|")[1:-1]][-2:] == ["1.00x", "1.00x"]
    md = (out / "results.md").read_text()
    assert "‡ A cell resumed" in md
    assert f"| bbh15 | all-at-once | 0 | {100 * cells['bbh15-predict-all-at-once-seed0']['test_accuracy']:.1f} %" in md
    assert f"| yes | {run.code_version()} |" in md  # each cell line names the code that made it


def test_fgo_route_shares_fgo_nearest_units_and_pays_for_them(tmp_path):
    out = tmp_path / "bench"
    argv = ["--fake", "--methods", "fgo-nearest,fgo-route,knn-fewshot", "--n-train", "1", "--n-val", "1", "--n-test", "1",
            "--out", str(out)]
    assert run.main(argv) == 0
    fgo, route = (json.loads((out / "cells" / f"bbh15-predict-{m}-seed0.json").read_text())
                  for m in ("fgo-nearest", "fgo-route"))
    assert route["shared_units_with"]["cell"] == "bbh15-predict-fgo-nearest-seed0"
    assert route["own_optimizer_usage"].get("calls", 0) == 0  # every partition and merge came from fgo's checkpoint
    assert route["compile_wall_s"] == round(route["own_compile_wall_s"] + fgo["compile_wall_s"], 1)
    assert route["optimizer_usage"]["calls"] == fgo["optimizer_usage"]["calls"]
    assert route["report"]["settings"]["route"] is True
    knn = json.loads((out / "cells" / "bbh15-predict-knn-fewshot-seed0.json").read_text())
    assert not route["resumed"]
    assert 0 <= knn["test_accuracy"] <= 1


def test_ratios_are_against_mipro_with_demos_when_it_ran():
    from benchmarks.report import aggregate, table

    def cell(method, wall, tokens):
        return {"task": "bbh15", "method": method, "seed": 0, "test_accuracy": 0.5, "n_test": 10,
                "compile_wall_s": wall, "optimizer_usage": {"calls": 1, "prompt_tokens": tokens}}

    rows = aggregate([cell("mipro-demos", 100.0, 1000), cell("mipro-instructions", 50.0, 500), cell("fgo", 200.0, 4000)])
    text = table(rows)
    assert "tokens vs mipro-demos" in text
    fgo = next(l for l in text.splitlines() if "| fgo |" in l)
    assert [c.strip() for c in fgo.split("|")[1:-1]][-2:] == ["4.00x", "2.00x"]


def test_a_cell_sharing_a_resumed_cells_units_is_partial_too(tmp_path):
    owner = {"compile_wall_s": 100.0, "resumed": True, "optimizer_usage": {"calls": 5}, "task_usage": {"calls": 9}}
    (tmp_path / "bbh15-predict-fgo-seed2.json").write_text(json.dumps(owner))
    cell = {"compile_wall_s": 4.0, "resumed": False, "optimizer_usage": {}, "task_usage": {"calls": 3}}
    run.add_shared_cost(cell, tmp_path / "bbh15-predict-fgo-seed2.json")
    assert cell["resumed"] and "bbh15-predict-fgo-seed2" in cell["replayed"]
    assert cell["compile_wall_s"] == 104.0 and cell["task_usage"]["calls"] == 12


def test_a_resumed_cell_adds_what_its_killed_attempt_spent_and_counts_in_ratios(tmp_path):
    from benchmarks.attempts import Marker
    from benchmarks.report import aggregate, table

    out = tmp_path / "bench"
    (out / "cells").mkdir(parents=True)
    killed = Marker(out / "cells" / "bbh15-predict-all-at-once-seed0.started", code_version="0ld0ld0")
    killed.record({"compile_wall_s": 500.0, "optimizer_usage": {"calls": 7, "prompt_tokens": 1000,
                                                                "peak_prompt_tokens": 99999},
                   "task_usage": {"calls": 40}})  # its last heartbeat; then the session stopped it
    argv = ["--fake", "--methods", "mipro-instructions,all-at-once", "--n-train", "1", "--n-val", "1",
            "--n-test", "1", "--out", str(out)]
    assert run.main(argv) == 0
    assert not list((out / "cells").glob("*.started*"))
    cell = json.loads((out / "cells" / "bbh15-predict-all-at-once-seed0.json").read_text())
    assert cell["resumed"] is True and cell["cost_over_attempts"] == 2
    assert cell["compile_wall_s"] == round(cell["own_attempt_compile_wall_s"] + 500.0, 1)
    assert cell["optimizer_usage"]["calls"] >= 7 + 1 and cell["optimizer_usage"]["prompt_tokens"] > 1000
    assert cell["optimizer_usage"]["peak_prompt_tokens"] == 99999 and cell["task_usage"]["calls"] > 40
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    rows = {r["method"]: r for r in aggregate(cells)}
    assert rows["all-at-once"]["resumed_seeds"] == []  # its whole compile is measured: ratios include it
    line = next(l for l in table(list(rows.values())).splitlines() if "| all-at-once |" in l)
    assert [c.strip() for c in line.split("|")[1:-1]][-1].endswith("x")
    md = (out / "results.md").read_text()
    assert "yes, cost summed over 2 attempts" in md
    assert f"| 0ld0ld0 then {run.code_version()} |" in md  # both attempts' code is named


def test_heartbeat_reports_while_the_block_runs_and_when_it_ends():
    import time

    from benchmarks.attempts import Heartbeat

    beats = []
    with Heartbeat(lambda: beats.append(time.perf_counter()), every=0.02):
        time.sleep(0.15)
    assert len(beats) >= 3  # several during the block, one at its end


def test_fgo_demos_can_start_from_another_runs_partitions_and_says_so(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["--fake", "--n-train", "1", "--n-val", "1", "--n-test", "1"]
    assert run.main(base + ["--methods", "fgo", "--out", str(first)]) == 0
    assert run.main(base + ["--methods", "fgo-demos", "--out", str(second), "--partitions-from", str(first)]) == 0
    cell = json.loads((second / "cells" / "bbh15-predict-fgo-demos-seed0.json").read_text())
    source = json.loads((first / "cells" / "bbh15-predict-fgo-seed0.json").read_text())
    assert cell["partitions_from"]["code_version"] == source["code_version"]
    assert cell["partitions_from"]["optimize_stage_s"] == source["report"]["timings"]["optimize"]
    assert cell["resumed"]  # partial cost: the partition stage was paid by the other run
    from benchmarks.report import partial

    assert partial(cell) and partial({**cell, "cost_over_attempts": 2})  # even when it also resumed a kill
    assert cell["report"]["stage_usage"]["optimize"].get("optimizer", {}).get("calls", 0) == 0
    assert cell["report"]["settings"]["route"] == "demos"
    # The stage table shows what the partitions cost where they were paid, so a whole compile adds up.
    paid = f"| fgo-demos | 0 | optimize, paid by bbh15-predict-fgo-seed0 ({source['code_version']}) | "
    assert paid in (second / "results.md").read_text()


def test_fgo_can_start_from_the_partitions_of_another_methods_cells(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["--fake", "--n-train", "1", "--n-val", "1", "--n-test", "1"]
    assert run.main(base + ["--methods", "fgo-demos", "--out", str(first)]) == 0
    assert run.main(base + ["--methods", "fgo,fgo-route", "--out", str(second),
                            "--partitions-from", f"{first}:fgo-demos"]) == 0
    for method in ("fgo", "fgo-route"):
        cell = json.loads((second / "cells" / f"bbh15-predict-{method}-seed0.json").read_text())
        assert cell["partitions_from"]["cell"].endswith("bbh15-predict-fgo-demos-seed0.json")
        assert cell["report"]["stage_usage"]["optimize"].get("task", {}).get("calls", 0) == 0  # reused, not redone

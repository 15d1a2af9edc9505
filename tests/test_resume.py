"""Long runs are safe: checkpoints survive SIGKILL and resume without redoing work; budgets stop cleanly."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import dspy
import pytest

from conftest import exact, losing_merge_respond, make_examples, optimizer_respond, task_respond, TOY_Z
from dspy_fgo import FGO, read_candidate
from fakes import FakeLM

CATS = ["alpha", "beta", "gamma", "delta"]
TESTS = os.path.dirname(__file__)


def compile_fgo(checkpoint_dir=None, prompt=None, trainset=None, **settings):
    settings.setdefault("accept_z", TOY_Z)
    prompt = prompt or FakeLM(optimizer_respond, model="fake/optimizer")
    fgo = FGO(metric=exact, task_model=FakeLM(task_respond, model="fake/task"), prompt_model=prompt,
              partition_by="category", epochs=2, num_threads=1, checkpoint_dir=checkpoint_dir, **settings)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset or make_examples(CATS))
    return fgo, program, prompt


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import conftest, dspy
    from fakes import FakeLM
    from dspy_fgo import FGO
    calls = 0
    def die_after(text):
        global calls
        calls += 1
        if calls == {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)
    prompt = FakeLM(conftest.optimizer_respond, model="fake/optimizer", fail=die_after)
    fgo = FGO(accept_z=conftest.TOY_Z, metric=conftest.exact, task_model=FakeLM(conftest.task_respond, model="fake/task"), prompt_model=prompt,
              partition_by="category", epochs=2, num_threads=1, checkpoint_dir={directory!r})
    fgo.compile(dspy.Predict("question -> answer"), trainset=conftest.make_examples({cats!r}))
""")


def test_sigkill_then_resume_redoes_nothing_finished(tmp_path):
    first, reference, full = compile_fgo()
    directory = str(tmp_path / "ckpt")
    script = KILLED_RUN.format(tests=TESTS, kill_after=11, directory=directory, cats=CATS)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    finished = sorted(p for p in os.listdir(directory) if p.startswith("partition-"))
    # 5 optimizer calls per partition: describe the task, critique, 3 proposals (one accepted).
    assert finished == ["partition-0000.json", "partition-0001.json"]
    saved = json.loads(open(os.path.join(directory, "partition-0000.json")).read())["result"]
    assert saved["task_description"] and saved["history"][1]["lessons"] and saved["history"][1]["proposals"]
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]

    fgo, resumed, prompt = compile_fgo(directory)
    assert read_candidate(resumed) == read_candidate(reference)
    assert prompt.calls == full.calls - 10  # the two finished partitions were not redone
    assert any("reused 2" in note for note in fgo.report_.notes)
    assert fgo.report_.partitions[0].epochs[1]["proposals"] == saved["history"][1]["proposals"]
    # The report counts what the reused partitions did, and the resumed one's earlier epochs.
    events = dict(fgo.report_.events)
    assert events.pop("partitions_resumed_mid_way") == 1
    assert events == first.report_.events

    # A third run reuses everything: the merge nodes were checkpointed too, with their events.
    fgo, again, prompt = compile_fgo(directory)
    assert prompt.calls == 0 and read_candidate(again) == read_candidate(reference)
    assert fgo.report_.events == first.report_.events


def test_checkpoint_of_other_data_or_settings_is_refused(tmp_path):
    compile_fgo(str(tmp_path))
    with pytest.raises(ValueError, match="different data or settings"):
        compile_fgo(str(tmp_path), trainset=make_examples(CATS[:2]))
    with pytest.raises(ValueError, match="different data or settings"):
        compile_fgo(str(tmp_path), merge_threshold=4)


def test_checkpoint_files_are_plain_json(tmp_path):
    compile_fgo(str(tmp_path))
    for name in os.listdir(tmp_path):
        json.loads((tmp_path / name).read_text())


@pytest.mark.parametrize("limit", [{"max_lm_calls": 20}, {"max_tokens": 3000}])
def test_budget_stops_cleanly_with_the_best_so_far(limit):
    trainset = make_examples(CATS)
    fgo, program, _ = compile_fgo(trainset=trainset, **limit)
    report = fgo.report_
    assert any("budget reached" in note for note in report.notes)
    calls = sum(u["calls"] for u in report.usage.values())
    full_calls = sum(u["calls"] for u in compile_fgo(trainset=trainset)[0].report_.usage.values())
    assert calls < full_calls
    assert isinstance(program, dspy.Predict) and read_candidate(program)["self"]


def test_cost_budget_uses_litellm_prices():
    """Fake LMs named as a priced model: usage gets a cost, and max_cost stops the run."""
    trainset = make_examples(CATS)

    def priced(max_cost=None):
        prompt = FakeLM(optimizer_respond, model="openai/gpt-4o-mini")
        fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=FakeLM(task_respond, model="openai/gpt-4o-mini"), prompt_model=prompt,
                  partition_by="category", epochs=2, num_threads=1, max_cost=max_cost)
        return fgo, fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)

    full, _ = priced()
    full_cost = sum(u["cost_usd"] for u in full.report_.usage.values())
    assert full_cost > 0 and not any("budget reached" in note for note in full.report_.notes)
    capped, program = priced(max_cost=full_cost / 4)
    cost = sum(u["cost_usd"] for u in capped.report_.usage.values())
    assert cost < full_cost and any("budget reached" in note for note in capped.report_.notes)
    assert read_candidate(program)["self"]


def test_cost_budget_refuses_unpriced_models():
    with pytest.raises(ValueError, match="LiteLLM has none for \\['fake/task'\\]"):
        compile_fgo(max_cost=1.0, prompt=FakeLM(optimizer_respond, model="openai/gpt-4o-mini"))
    with pytest.raises(ValueError, match="max_cost must be a positive number"):
        compile_fgo(max_cost=0)


def test_sigkill_mid_partition_with_default_threads_redoes_at_most_the_epochs_in_flight():
    from benchmarks.resume import measure

    # DSPy's cache is off (the fake LMs have cache=False), partitions learn over several epochs,
    # and the kill lands at 60% of the optimizer calls, while partitions are in flight.
    (row,) = measure([0.6], latency=0.0)
    assert row["same_result"]
    assert row["partitions_resumed_mid_way"] >= 1
    # At most one epoch (describe + critique + 3 proposals = 5 calls) per partition in flight (4 threads).
    assert 0 <= row["redone"] <= 4 * 5, row


def test_a_resumed_run_reports_the_events_of_the_merge_nodes_it_reuses(tmp_path):
    settings = dict(trainset=make_examples(CATS[:2]), max_demos=0)
    first, _, _ = compile_fgo(str(tmp_path), prompt=FakeLM(losing_merge_respond), **settings)
    assert first.report_.events["merges_lost_to_best_child"] == 1
    again, _, prompt = compile_fgo(str(tmp_path), prompt=FakeLM(losing_merge_respond), **settings)
    assert prompt.calls == 0 and again.report_.events == first.report_.events

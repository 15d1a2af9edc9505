"""Progress bars: shown when asked (or watched), silent in CI; milestones logged under dspy_fgo."""

import logging

import dspy

from conftest import exact, make_examples
from dspy_fgo import FGO, BatchWise
from dspy_fgo.run.progress import wanted


def test_bars_show_each_stage_with_usage(task_lm, prompt_lm, capsys):
    FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1,
        progress=True).compile(dspy_program(), trainset=make_examples(["alpha", "beta", "gamma", "delta"]))
    err = capsys.readouterr().err
    assert "FGO: optimizing partitions" in err and "4/4" in err
    assert "FGO: merging" in err and "FGO: final check on the trainset" in err
    assert "lm_calls=" in err and "tokens=" in err and "partition=" in err


def test_baselines_show_their_batches(task_lm, prompt_lm, capsys):
    BatchWise(metric=exact, task_model=task_lm, prompt_model=prompt_lm, epochs=1, batch_size=3,
              progress=True).compile(dspy_program(), trainset=make_examples(["alpha", "beta"]))
    assert "BatchWise: updating" in capsys.readouterr().err


def test_quiet_in_ci_and_when_asked(task_lm, prompt_lm, capsys, monkeypatch, caplog):
    monkeypatch.setenv("CI", "true")
    assert not wanted(None) and wanted(True) and not wanted(False)
    with caplog.at_level(logging.INFO, logger="dspy_fgo"):
        FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category",
            epochs=1).compile(dspy_program(), trainset=make_examples(["alpha", "beta"]))
    assert capsys.readouterr().err == ""
    assert any("partition 'alpha'" in r.getMessage() for r in caplog.records)  # still followable in the logs


def dspy_program():
    return dspy.Predict("question -> answer")

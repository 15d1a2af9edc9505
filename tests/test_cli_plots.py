"""The dspy-fgo command's report rendering, and the plots, on a real (fake-LM) report."""

import dspy

from conftest import exact, make_examples
from dspy_fgo import FGO
from dspy_fgo.cli import main


def test_report_command_writes_markdown_and_pngs(tmp_path, task_lm, prompt_lm, capsys):
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples([f"c{i}" for i in range(6)], 2))
    fgo.report_.save(tmp_path / "report.json")
    assert main(["report", str(tmp_path / "report.json"), "--out", str(tmp_path / "out")]) == 0
    for name in ("summary.md", "tree.png", "partitions.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000 or name == "summary.md"
    assert "merge node" in (tmp_path / "out" / "summary.md").read_text()
    assert "FGO: 6 partitions" in capsys.readouterr().out


def test_help_explains_itself(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out and "report" in out and "bench" in out


def test_demo_quiets_dspy_bars_but_keeps_its_own(monkeypatch, capsys):
    """DSPy's bootstrapping bar calls tqdm.tqdm (tqdm read TQDM_DISABLE at import, so the demo cannot
    use it); the demo's own bars (tqdm.auto, disable=False) must still draw."""
    import logging

    import tqdm
    from tqdm.auto import tqdm as auto_tqdm

    from dspy_fgo.cli import _quiet

    monkeypatch.setattr(tqdm, "tqdm", tqdm.tqdm)  # restored after the test, as are the log levels
    levels = {name: logging.getLogger(name).level for name in ("dspy", "optuna", "LiteLLM", "litellm", "httpx",
                                                               "dspy_fgo")}
    try:
        _quiet()
        list(tqdm.tqdm(range(3), desc="dspy-bootstrap"))
        list(auto_tqdm(range(3), desc="demo-stage", disable=False))
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    err = capsys.readouterr().err
    assert "demo-stage" in err and "dspy-bootstrap" not in err

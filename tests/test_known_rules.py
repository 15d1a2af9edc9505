"""The known-rules benchmark's plumbing, with a task model that follows rules (no result here: the
benchmark's figures come from the real model)."""

import re
from types import SimpleNamespace

import pytest

from benchmarks import known_rules
from benchmarks.proposer_quality import ScriptedLM, question_of
from dspy_fgo.data import bbh_metric, load_bbh, split_bbh

TASKS = ["navigate", "sports_understanding", "word_sorting"]


def rule_follower(rules):
    """Right on a question exactly when the instruction holds its task's good rule."""
    by_question = {}

    def respond(fields, messages, rollout):
        question = question_of(messages)
        example = by_question[question]
        right = rules[example.task]["good"] in re.sub(r"\s+", " ", messages[0]["content"])
        answer = example.answer if right else "I am not sure"
        return {f: answer if f == "answer" else "..." for f in fields}

    return ScriptedLM("scripted/task", respond), by_question


@pytest.fixture
def world():
    rules = {t: r for t, r in known_rules.load_rules().items() if t in TASKS}
    train, val, test = split_bbh(load_bbh(tasks=TASKS), 4, 4, 4)
    task = SimpleNamespace(train=train, val=val, test=test, metric=bbh_metric)
    task_lm, by_question = rule_follower(rules)
    by_question.update({ex.question: ex for ex in [*train, *val, *test]})
    return task, task_lm, rules


def test_the_fixture_has_a_good_and_a_wrong_rule_for_every_bbh15_task():
    from dspy_fgo.data import TASKS as ALL

    rules = known_rules.load_rules()
    assert sorted(rules) == sorted(ALL)
    assert all(r["good"] and r["wrong"] and r["good"] != r["wrong"] for r in rules.values())
    assert len(known_rules.given_instruction(rules)) <= 4000  # fits FGO's default max_instruction_chars


@pytest.mark.parametrize("q, expected", [(1.0, 1.0), (0.0, 0.0)])
def test_fgo_with_the_scripted_proposer_learns_and_merges_every_tasks_rule_or_none(world, q, expected):
    task, task_lm, rules = world
    given = known_rules.run_cell("given", 0, task, "predict", task_lm, rules)
    assert given["test_accuracy"] == 1.0
    cell = known_rules.run_cell(f"fgo-q{q:g}", 0, task, "predict", task_lm, rules)
    assert cell["test_accuracy"] == expected
    assert cell["optimizer_calls"] > 0  # failed runs were there to learn from
    if expected:
        assert all(rules[t]["good"] in cell["instruction"]["self"] for t in TASKS)
    else:
        assert cell["selection"]["returned"] in ("instructions unchanged", "unoptimized")


def test_an_unknown_cell_is_refused(capsys):
    with pytest.raises(SystemExit):
        known_rules.main(["--cells", "fgo-best"])
    assert "unknown cell" in capsys.readouterr().err

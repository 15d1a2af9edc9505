"""Offline tests for the BIG-bench (BBH-15) data module."""

import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import pytest  # noqa: E402

from dspy_fgo.data import TASKS, bbh_metric, bbh_program, load_bbh, split_bbh  # noqa: E402
from dspy_fgo.data.bbh import VENDORED_DIR  # noqa: E402

FREE_FORM = {"object_counting", "word_sorting"}


def _raw(task):
    with open(VENDORED_DIR / f"{task}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _ex(task, choices, targets, answer=None):
    return dspy.Example(
        question="q", answer=answer or targets[0], task=task, choices=choices, targets=targets, id=0
    ).with_inputs("question")


# ------------------------------------------------------------------ loading


def test_tasks_sorted_and_vendored():
    assert len(TASKS) == 15 and list(TASKS) == sorted(TASKS)
    assert sorted(p.stem for p in VENDORED_DIR.glob("*.jsonl")) == list(TASKS)
    assert (VENDORED_DIR / "README.md").is_file()


def test_load_vendored_all_tasks():
    examples = load_bbh()
    assert len(examples) == 15 * 40
    for task in TASKS:
        exs = [e for e in examples if e.task == task]
        raw = _raw(task)
        assert len(exs) == 40
        assert [e.id for e in exs] == [r["id"] for r in raw]  # file order kept
        for e, r in zip(exs, raw):
            assert e.answer == r["target"] and e.targets == r["targets"] and sorted(e.choices) == sorted(r["choices"])
            assert set(e.inputs().keys()) == {"question"}
            assert e.question.startswith(r["input"])


def test_question_options_format():
    for e in load_bbh():
        if e.task in FREE_FORM:
            assert e.choices == [] and "Options:" not in e.question
        else:
            lines = [f"({chr(65 + i)}) {c}" for i, c in enumerate(e.choices)]
            assert e.question.endswith("\nOptions:\n" + "\n".join(lines))


def test_the_options_do_not_give_the_answer_away():
    # BIG-bench lists date_understanding's answer first; in source order "(A)" is right 40 of 40 times.
    assert all(r["choices"][0] == r["target"] for r in _raw("date_understanding"))
    for task in TASKS:
        examples = load_bbh(tasks=task)
        if task in FREE_FORM:
            continue
        first = sum(e.choices[0] == e.answer for e in examples) / len(examples)
        assert first < 0.65, (task, first)  # two-option tasks: about half, by chance
        if task != "date_understanding":  # the others keep their source order (a label set keeps its order)
            assert [e.choices for e in examples] == [r["choices"] for r in _raw(task)]
    # The order is fixed per example, so every run and method sees the same questions, and the
    # metric reads the letters in it.
    again = load_bbh(tasks="date_understanding")
    assert [e.question for e in again] == [e.question for e in load_bbh(tasks="date_understanding")]
    for e in again:
        assert bbh_metric(e, f"({chr(65 + e.choices.index(e.answer))})")
    assert load_bbh(tasks="date_understanding", shuffle_choices=False)[0].choices == _raw("date_understanding")[0]["choices"]


def test_load_subset_and_limit():
    exs = load_bbh(tasks=["snarks", "navigate"], limit=3)
    assert [e.task for e in exs] == ["snarks"] * 3 + ["navigate"] * 3
    assert [e.id for e in exs[:3]] == [r["id"] for r in _raw("snarks")[:3]]
    assert {e.task for e in load_bbh("word_sorting")} == {"word_sorting"}


def test_load_from_directory(tmp_path):
    rows = _raw("object_counting")[:5]
    (tmp_path / "object_counting.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exs = load_bbh(tasks=["object_counting"], source=tmp_path)
    assert [e.id for e in exs] == [r["id"] for r in rows]
    assert load_bbh(tasks="object_counting", source=str(tmp_path))[0].question == rows[0]["input"]
    with pytest.raises(FileNotFoundError, match="snarks"):
        load_bbh(tasks=["snarks"], source=tmp_path)
    with pytest.raises(FileNotFoundError):
        load_bbh(source=tmp_path / "nope")


def test_load_from_datasets():
    Dataset = pytest.importorskip("datasets").Dataset  # optional: load_bbh reads any Dataset-like source

    rows = _raw("snarks")[:6] + _raw("object_counting")[:4]
    ds = Dataset.from_list(rows)
    exs = load_bbh(source=ds)
    assert sorted({e.task for e in exs}) == ["object_counting", "snarks"]
    assert [e.id for e in exs if e.task == "snarks"] == [r["id"] for r in rows[:6]]
    assert exs == load_bbh(source=rows)  # plain list of dicts works the same
    assert len(load_bbh(tasks=["snarks"], source=ds, limit=2)) == 2
    snark = next(e for e in exs if e.task == "snarks")
    assert "\nOptions:\n(A) (a)\n(B) (b)" in snark.question
    with pytest.raises(ValueError, match="known tasks: object_counting, snarks"):
        load_bbh(tasks=["navigate"], source=ds)
    with pytest.raises(TypeError, match="split"):
        load_bbh(source={"train": ds})
    with pytest.raises(ValueError, match="missing column.*target"):
        load_bbh(source=ds.remove_columns(["target"]))


def test_load_dataset_json(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(
        "json", data_files=str(VENDORED_DIR / "hyperbaton.jsonl"), cache_dir=str(tmp_path)
    )["train"]
    assert load_bbh(source=ds) == load_bbh(tasks=["hyperbaton"])


def test_unknown_task_error():
    with pytest.raises(ValueError, match="unknown BBH task.*known tasks: date_understanding"):
        load_bbh(tasks=["not_a_task"])


# ------------------------------------------------------------------ split


def test_split_sizes_disjoint_deterministic():
    examples = load_bbh()
    train, val, test = split_bbh(examples)
    assert (len(train), len(val), len(test)) == (15 * 4, 15 * 4, 15 * 20)
    key = lambda e: (e.task, e.id)  # noqa: E731
    ids = [set(map(key, s)) for s in (train, val, test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert split_bbh(load_bbh()) == (train, val, test)
    snarks = [e for e in examples if e.task == "snarks"]
    assert [e for e in train if e.task == "snarks"] == snarks[:4]
    assert [e for e in val if e.task == "snarks"] == snarks[4:8]
    assert [e for e in test if e.task == "snarks"] == snarks[8:28]
    tr, va, te = split_bbh(examples, n_train=10, n_val=10, n_test=20)  # exactly 40
    assert len(tr) + len(va) + len(te) == 600


def test_split_too_few():
    with pytest.raises(ValueError, match="'navigate' has 5 examples, need 28"):
        split_bbh(load_bbh(tasks=["navigate"], limit=5))


# ------------------------------------------------------------------ metric

MC = ["circle", "line", "sector"]


@pytest.mark.parametrize(
    "pred,ok",
    [
        ("sector", True), ("Sector", True), (" sector. ", True), ('"sector"', True),
        ("(sector)", True), ("**sector**", True), ("C", True), ("c", True), ("(C)", True),
        ("C.", True), ("[C]", True), ("(C) sector", True), ("(C) Sector.", True),
        ("B", False), ("(B)", False), ("line", False), ("(B) sector", False), ("D", False),
        ("The answer is C", False), ("C) sector because", False), ("sector shape", False), ("", False),
    ],
)
def test_metric_multiple_choice(pred, ok):
    ex = _ex("geometric_shapes", MC, ["sector"])
    assert bbh_metric(ex, dspy.Prediction(answer=pred)) is ok
    assert bbh_metric(ex, pred) is ok


def test_metric_letter_choices():
    # snarks choices are "(a)"/"(b)"; hyperbaton's are "a"/"b": letters and texts agree.
    snark = _ex("snarks", ["(a)", "(b)"], ["(b)"])
    assert all(bbh_metric(snark, p) for p in ["(b)", "b", "B", "(B)", "B."])
    assert not any(bbh_metric(snark, p) for p in ["(a)", "A", "a"])
    hyper = _ex("hyperbaton", ["a", "b"], ["a"])
    assert bbh_metric(hyper, "A") and bbh_metric(hyper, "(a)") and not bbh_metric(hyper, "b")
    # a choice text that is a single letter wins over its letter reading
    odd = _ex("x", ["b", "a"], ["a"])
    assert bbh_metric(odd, "a") and not bbh_metric(odd, "b") and bbh_metric(odd, "(B)") is False


def test_metric_sentence_choices_trailing_period():
    ex = _ex("tracking", ["yellow present.", "purple present."], ["purple present."])
    assert bbh_metric(ex, "purple present") and bbh_metric(ex, "B") and not bbh_metric(ex, "A")


def test_metric_object_counting_targets():
    ex = _ex("object_counting", [], ["twelve", "12"])
    for pred in ["12", "twelve", "Twelve.", " 12 "]:
        assert bbh_metric(ex, pred)
    for pred in ["11", "eleven", "A", "12 objects", "1 2"]:
        assert not bbh_metric(ex, pred)
    # without targets fall back to answer
    bare = dspy.Example(question="q", answer="ten", task="object_counting", choices=[])
    assert bbh_metric(bare, "Ten") and not bbh_metric(bare, "10")


def test_metric_word_sorting():
    ex = _ex("word_sorting", [], ["apple banana shouldn't zebra"])
    assert bbh_metric(ex, "apple banana shouldn't zebra")
    assert bbh_metric(ex, "  Apple\nbanana  shouldn't zebra. ")
    assert bbh_metric(ex, "apple, banana, shouldn't, zebra")
    assert not bbh_metric(ex, "banana apple shouldn't zebra")
    assert not bbh_metric(ex, "apple banana zebra")


def test_metric_missing_answer():
    ex = _ex("navigate", ["True", "False"], ["False"])
    assert not bbh_metric(ex, dspy.Prediction(reasoning="x"))
    assert bbh_metric(ex, dspy.Prediction(answer="false"), trace=object())


def test_metric_accepts_every_vendored_answer():
    for e in load_bbh():
        assert bbh_metric(e, dspy.Prediction(answer=e.answer))
        if e.choices:
            letter = chr(65 + e.choices.index(e.answer))
            assert bbh_metric(e, letter) and bbh_metric(e, f"({letter})")
            wrong = chr(65 + (e.choices.index(e.answer) + 1) % len(e.choices))
            assert not bbh_metric(e, wrong)


# ------------------------------------------------------------------ program


def test_bbh_program():
    p = bbh_program()
    assert isinstance(p, dspy.Predict)
    assert p.signature.instructions == "Answer the question."
    assert list(p.signature.input_fields) == ["question"]
    assert list(p.signature.output_fields) == ["answer"]
    cot = bbh_program("cot", instruction="Think, then answer.")
    assert isinstance(cot, dspy.ChainOfThought)
    assert cot.predict.signature.instructions == "Think, then answer."
    assert "answer" in cot.predict.signature.output_fields
    with pytest.raises(ValueError):
        bbh_program("react")

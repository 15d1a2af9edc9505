"""BIG-bench (BBH-15) data: loaders, a deterministic split, the metric and a baseline program.

The 15 BIG-bench tasks that BIG-Bench Hard selected, in their original BIG-bench form. A small
sample (the first 40 examples of each task) ships with the package under ``dspy_fgo/data/bbh/``
(see its README.md for provenance and the Apache-2.0 license notice), so everything here works
offline. Larger data can be loaded from a directory of ``<task>.jsonl`` files or from a
``datasets.Dataset`` with the same columns.

Every example becomes a ``dspy.Example`` with fields ``question``, ``answer``, ``task``,
``choices``, ``targets`` and ``id``, and inputs ``("question",)``. For multiple-choice tasks the
question is the task input followed by the lettered options (shuffled, in an order fixed per
example, for a task whose source lists the answer first)::

    <input>
    Options:
    (A) <choice 1>
    (B) <choice 2>
    ...

Free-form tasks (``object_counting``, ``word_sorting``) get the input unchanged.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

import dspy

from dspy_fgo.data.programs import single_step

__all__ = ["TASKS", "VENDORED_DIR", "load_bbh", "split_bbh", "bbh_metric", "bbh_program", "format_question"]

VENDORED_DIR = Path(__file__).parent / "bbh"  # the vendored sample: dspy_fgo/data/bbh/*.jsonl

TASKS: tuple[str, ...] = (
    "date_understanding",
    "disambiguation_qa",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "navigate",
    "object_counting",
    "reasoning_about_colored_objects",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "tracking_shuffled_objects_three_objects",
    "word_sorting",
)

_REQUIRED_COLUMNS = ("task", "input", "target")
_LETTERS = string.ascii_uppercase
ANSWER_FIRST = 0.9  # a task whose answer is the first option this often has its options shuffled


# --------------------------------------------------------------------------- loading


def format_question(text: str, choices: Iterable[str] = ()) -> str:
    """Return ``text`` followed by ``"\\nOptions:\\n(A) ...\\n(B) ..."`` when there are choices."""
    choices = list(choices or [])
    if not choices:
        return text
    if len(choices) > len(_LETTERS):
        raise ValueError(f"at most {len(_LETTERS)} choices are supported, got {len(choices)}")
    options = "\n".join(f"({_LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{text}\nOptions:\n{options}"


def _to_example(row: Mapping[str, Any], index: int, shuffle_choices: bool = True) -> dspy.Example:
    choices = [str(c) for c in (row.get("choices") or [])]
    if shuffle_choices:
        # Fixed by task and id, so every run and every method sees the same question.
        random.Random(f"{row['task']}:{row.get('id', index)}").shuffle(choices)
    target = str(row["target"])
    targets = [str(t) for t in (row.get("targets") or [target])]
    return dspy.Example(
        question=format_question(str(row["input"]), choices),
        answer=target,
        task=str(row["task"]),
        choices=choices,
        targets=targets,
        id=row.get("id", index),
    ).with_inputs("question")


def _check_tasks(tasks: str | Iterable[str] | None, known: Iterable[str]) -> list[str]:
    known = list(known)
    if tasks is None:
        return known
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown BBH task(s) {unknown}; known tasks: {', '.join(known)}")
    return tasks


def _read_dir(directory: Path, tasks: list[str]) -> dict[str, list[dict]]:
    if not directory.is_dir():
        raise FileNotFoundError(f"BBH data directory not found: {directory}")
    rows = {}
    for task in tasks:
        path = directory / f"{task}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no data file for BBH task {task!r}: {path}")
        with path.open(encoding="utf-8") as f:
            rows[task] = [json.loads(line) for line in f if line.strip()]
    return rows


def _records(source: Any) -> list[dict]:
    """Rows of a ``datasets.Dataset``, a pandas DataFrame or an iterable of mappings."""
    if isinstance(source, Mapping):  # includes datasets.DatasetDict
        raise TypeError(
            "source is a mapping (e.g. a DatasetDict); pass one split, e.g. source=ds['train']"
        )
    columns = getattr(source, "column_names", None)  # datasets.Dataset
    if columns is None and hasattr(source, "to_dict") and hasattr(source, "columns"):  # DataFrame
        columns, source = list(source.columns), source.to_dict("records")
    rows = [dict(r) for r in source]
    if columns is None:
        columns = set().union(*rows) if rows else set(_REQUIRED_COLUMNS)
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"BBH source is missing column(s) {missing}; have {sorted(columns)}")
    return rows


def load_bbh(
    tasks: str | Iterable[str] | None = None,
    source: Any = None,
    limit: int | None = None,
    shuffle_choices: bool = True,
) -> list[dspy.Example]:
    """Load BBH examples as ``dspy.Example`` objects (inputs: ``question``).

    Args:
        tasks: task name(s) to load; ``None`` means all (``TASKS`` for files, every task present
            for an in-memory source). Unknown names raise ``ValueError`` listing the known ones.
        source: ``None`` for the vendored sample (first 40 examples per task); a directory
            (``str``/``Path``) of ``<task>.jsonl`` files, e.g. ``/work/shared/data/bbh``; or a
            ``datasets.Dataset`` (e.g. ``load_dataset("json", data_files=...)["train"]``), pandas
            DataFrame or list of dicts with columns ``task``, ``input``, ``target`` and optionally
            ``choices``, ``targets``, ``id``.
        limit: keep at most the first ``limit`` examples of each task.
        shuffle_choices: where a task's source lists the answer first in nearly every question
            (BIG-bench's date_understanding: 297 of 300), list its options in an order fixed by
            task and ``id``; other tasks keep the source order. ``False`` keeps it everywhere.

    Returns:
        Examples grouped by task (in the order of ``tasks``, default sorted by name), each task's
        examples in source order.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if source is None or isinstance(source, (str, os.PathLike)):
        directory = VENDORED_DIR if source is None else Path(source)
        selected = _check_tasks(tasks, TASKS)
        by_task = _read_dir(directory, selected)
    else:
        by_task = {}
        for row in _records(source):
            by_task.setdefault(str(row["task"]), []).append(row)
        selected = _check_tasks(tasks, sorted(by_task))

    examples = []
    for task in selected:
        shuffle = shuffle_choices and _answer_comes_first(by_task[task])
        for i, row in enumerate(by_task[task][:limit]):
            examples.append(_to_example(row, i, shuffle))
    return examples


def _answer_comes_first(rows: list[Mapping[str, Any]]) -> bool:
    """Whether a task's source lists the answer as the first option in at least ``ANSWER_FIRST`` of
    its multiple-choice questions (BIG-bench's date_understanding: 297 of 300), so that "(A)"
    scores without reading the question."""
    choices = [row for row in rows if row.get("choices")]
    first = sum(str(row["choices"][0]) == str(row["target"]) for row in choices)
    return len(choices) >= 10 and first >= ANSWER_FIRST * len(choices)


def split_bbh(
    examples: Iterable[dspy.Example], n_train: int = 4, n_val: int = 4, n_test: int = 20
) -> tuple[list[dspy.Example], list[dspy.Example], list[dspy.Example]]:
    """Split per task, deterministically, in the given order (no shuffling).

    For each task (in order of first appearance) its first ``n_train`` examples go to train, the
    next ``n_val`` to val and the next ``n_test`` to test; the rest are unused. Raises
    ``ValueError`` when a task has fewer than ``n_train + n_val + n_test`` examples.

    Returns:
        ``(train, val, test)``, each grouped by task.
    """
    if min(n_train, n_val, n_test) < 0:
        raise ValueError("split sizes must be >= 0")
    by_task: dict[str, list[dspy.Example]] = {}
    for ex in examples:
        by_task.setdefault(ex.task, []).append(ex)
    need = n_train + n_val + n_test
    train, val, test = [], [], []
    for task, exs in by_task.items():
        if len(exs) < need:
            raise ValueError(
                f"BBH task {task!r} has {len(exs)} examples, need {need} "
                f"(n_train={n_train} + n_val={n_val} + n_test={n_test})"
            )
        train += exs[:n_train]
        val += exs[n_train : n_train + n_val]
        test += exs[n_train + n_val : need]
    return train, val, test


# --------------------------------------------------------------------------- metric

_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_QUOTES = ('"', "'", "`", "*", "\u201c\u201d", "\u2018\u2019")  # same char both ends, or open/close


def _wrapped(s: str) -> bool:
    """True when the bracket opening ``s`` is the one closing it, as in "(a)" but not "(a) (b)"."""
    if len(s) < 2 or _PAIRS.get(s[0]) != s[-1]:
        return False
    depth = 0
    for i, ch in enumerate(s):
        depth += ch == s[0]
        depth -= ch == s[-1]
        if depth == 0:
            return i == len(s) - 1
    return False


def _normalize(text: Any) -> str:
    """Lowercase, collapse whitespace, and peel surrounding brackets, quotes and trailing periods."""
    s = " ".join(str(text).split()).lower()
    while True:
        before = s
        s = s.strip().rstrip(".").strip()
        if _wrapped(s):
            s = s[1:-1]
        for q in _QUOTES:
            o, c = (q, q) if len(q) == 1 else (q[0], q[1])
            if len(s) >= 2 and s[0] == o and s[-1] == c:
                s = s[1:-1]
        if s == before:
            return s


_LETTER_PREFIX = re.compile(r"^\(([a-z])\)\s+(.+)$")


def _candidates(pred: str, choices: list[str]) -> set[str]:
    """What a normalized prediction may denote: itself, or the choice a bare letter names.

    A bare letter ("B", "(B)", "b.") maps to the corresponding choice unless it is itself one of the
    choices' texts (hyperbaton's choices are "a"/"b"). An echoed option line "(B) <text>" counts only
    when the letter and the text name the same choice.
    """
    norm = _normalize(pred)
    out = {norm}
    if not choices:
        return out
    texts = [_normalize(c) for c in choices]
    if norm in texts:
        return out
    if len(norm) == 1 and norm in string.ascii_lowercase:
        idx = ord(norm) - ord("a")
        if idx < len(texts):
            out.add(texts[idx])
        return out
    m = _LETTER_PREFIX.match(norm)
    if m:
        idx = ord(m.group(1)) - ord("a")
        if idx < len(texts) and _normalize(m.group(2)) == texts[idx]:
            out.add(texts[idx])
    return out


def _tokens(text: Any) -> list[str]:
    return [t for t in re.split(r"[\s,]+", _normalize(text)) if t]


def bbh_metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    """Normalized exact match of ``prediction.answer`` against any of ``example.targets``.

    Both sides are lowercased, whitespace-collapsed, and stripped of surrounding brackets,
    quotes (and ``*``) and trailing periods. For multiple-choice examples a bare option letter
    ("B", "(B)", "b.") stands for that choice, and "(B) <choice text>" is accepted when letter and
    text agree. Nothing else is extracted: "The answer is B" or "B because ..." is wrong.
    For ``word_sorting`` the answers are compared as token sequences (split on whitespace/commas).
    ``prediction`` may be a ``dspy.Prediction`` (its ``answer``) or a plain string.
    """
    answer = prediction if isinstance(prediction, str) else getattr(prediction, "answer", None)
    if answer is None:
        return False
    targets = example.get("targets") or [example.answer]
    if example.get("task") == "word_sorting":
        got = _tokens(answer)
        return any(got == _tokens(t) for t in targets)
    gold = {_normalize(t) for t in targets}
    return bool(_candidates(answer, list(example.get("choices") or [])) & gold)


# --------------------------------------------------------------------------- program


def bbh_program(kind: str = "predict", instruction: str = "Answer the question.") -> dspy.Module:
    """A baseline program with signature ``question -> answer`` and the given instruction.

    ``kind``: ``"predict"`` for ``dspy.Predict``, ``"cot"`` / ``"chain_of_thought"`` for
    ``dspy.ChainOfThought``.
    """
    return single_step(dspy.Signature("question -> answer", instruction), kind)

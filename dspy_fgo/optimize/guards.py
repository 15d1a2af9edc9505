"""Guards on what the optimizer LM writes: a proposal that leaks the prompt or copies an example
is refused before it is ever evaluated."""

from __future__ import annotations

import re
from typing import Sequence

import dspy

from dspy_fgo.divide.partition import input_text

from dspy_fgo.optimize.prompts import Budget

COPY_MIN_WORDS = 6  # a rewrite quoting this many words of one example's inputs is about that example
COPY_MIN_NUMBERS = 2  # ... or this many of its numbers (of 3 characters or more: 53.87, 1966)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copies_examples(proposal: str, current: str, examples: Sequence[dspy.Example],
                    min_words: int = COPY_MIN_WORDS) -> bool:
    """True when ``proposal`` quotes ``min_words`` words in a row from the inputs of some, but not
    all, of ``examples`` (of the only one, if there is one) that ``current`` does not already hold.

    Text every example shares is the task's own wording and may be quoted; text found in only some
    examples is about those examples (a question's names, numbers, word lists), and an instruction
    that carries it has memorized its partition rather than learned the task (small optimizer
    models do this often), and a merge would spread it to every task.
    A proposal that states an example's answer is a copy too (``states_an_answer``).
    """
    if not examples:
        return False
    fresh = _ngrams(proposal, min_words) - _ngrams(current, min_words)
    grams = [_ngrams(input_text(ex), min_words) for ex in examples]
    for gram in fresh:
        holders = sum(gram in g for g in grams)
        if holders and (holders < len(grams) or len(grams) == 1):
            return True
    return copies_numbers(proposal, current, examples) or states_an_answer(proposal, current, examples)


def copies_numbers(proposal: str, current: str, examples: Sequence[dspy.Example],
                   min_numbers: int = COPY_MIN_NUMBERS) -> bool:
    """True when ``proposal`` holds ``min_numbers`` numbers (3 characters or more) of one example's
    inputs that ``current`` does not and that not every example holds: that example's data, not a rule.

    Numbers slip past the word test: the 1.5B retold an SVG path's points as "Start at the first
    point (53.87,61.90)", one number per line. The numbers must come from the same example, so
    that a rule naming constants ("365 days, 100 years") that single examples happen to hold passes."""
    inputs = [set(_numbers(input_text(ex))) for ex in examples]
    if not inputs:
        return False
    fresh = set(_numbers(proposal)) - set(_numbers(current))
    particular = {n for n in fresh if len(inputs) == 1 or not all(n in held for held in inputs)}
    return any(len(particular & held) >= min_numbers for held in inputs)


def _numbers(text: str) -> list[str]:
    return [n for n in _NUMBER.findall(text) if len(n) >= 3]


def states_an_answer(proposal: str, current: str, examples: Sequence[dspy.Example]) -> bool:
    """True when ``proposal`` states some example's particular answer (``particular_answer``) that
    ``current`` does not, and that is not in every example's inputs.

    An instruction that ends "Therefore, the date 24 hours later is 03/03/1966" is one training
    example solved, not a rule: the 1.5B wrote exactly that for BBH's date task with
    ChainOfThought, and the merge then carried it to every task. A class label ("very positive",
    "not applicable", "yes") is named by general instructions too, and is left alone.
    """
    answers = [tuple(_words(str(value))) for example in examples for value in example.labels().values()]
    for answer in answers:
        n = len(answer)
        if not particular_answer(answer, answers) or answer not in _ngrams(proposal, n) \
                or answer in _ngrams(current, n):
            continue
        if len(examples) == 1 or not all(answer in _ngrams(input_text(ex), n) for ex in examples):
            return True
    return False


def particular_answer(answer: tuple[str, ...], answers: Sequence[tuple[str, ...]]) -> bool:
    """An answer (as words) that belongs to its example rather than to a set of classes: two or more
    words with a number among them (a date, an amount) or three or more words (a phrase), which no
    other example has. "very positive", "not applicable", "yes" or "6" are classes."""
    numeric = any(any(c.isdigit() for c in word) for word in answer)
    return (len(answer) >= 3 or (len(answer) == 2 and numeric)) and answers.count(answer) <= 1


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())



_FENCE = re.compile(r"^```[a-zA-Z]*\n?|\n?```$")
_SCORE_LINE = re.compile(r"^\(score [0-9.]+\)\s*")  # our prompt shows "(score 0.50)" above the instruction


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def clean_instruction(text: str | None, budget: Budget, step: str = "", current: str = "") -> str | None:
    """The proposed instruction, or None when it is empty, a leak of the prompt (its framing, or
    ``step``, our description of the step being rewritten), or runaway (longer than
    ``budget.instruction_limit(current)``)."""
    if not text:
        return None
    text = _FENCE.sub("", str(text).strip()).strip().strip('"').strip()
    text = _SCORE_LINE.sub("", text)  # a small model echoes the score line; the instruction is what follows
    if len(text) < 8 or len(text) > budget.instruction_limit(current):
        return None
    if any(mark in text for mark in ("[[ ##", "### Run ", "Critique:", "step `")):
        # The model copied our prompt's framing, or wrote about the instruction ("To improve the
        # instruction for step `self`, we should ...", seen from the 1.5B) instead of writing one.
        return None
    if step and _normal(step)[:60] in _normal(text):
        return None  # it restated our description of the step (seen from the 1.5B on tool texts)
    return text

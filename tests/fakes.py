"""Deterministic fake LMs for offline tests of the plumbing (never for benchmarks)."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace
from typing import Callable

import dspy

_OUTPUTS = re.compile(r"Your output fields are:(.*?)(?:All interactions|\Z)", re.S)
_FIELD = re.compile(r"\d+\. `(\w+)`")


def output_fields(messages: list[dict]) -> list[str]:
    system = messages[0]["content"]
    block = _OUTPUTS.search(system)
    return _FIELD.findall(block.group(1)) if block else ["answer"]


def signature_name(messages: list[dict]) -> str:
    """The first line of the signature's instructions, to tell optimizer calls apart."""
    system = messages[0]["content"]
    match = re.search(r"In adhering to this structure, your objective is: \n?\s*(.*)", system)
    return match.group(1).strip() if match else ""


class FakeLM(dspy.BaseLM):
    """Answers every call with ``respond(fields, messages) -> {field: value}``; counts calls.

    Its responses carry usage (prompt tokens ~ chars/4) so accounting can be tested.
    """

    def __init__(self, respond: Callable[[list[str], list[dict]], dict], model: str = "fake/lm", fail: Callable | None = None):
        super().__init__(model=model, model_type="chat", temperature=0.0, max_tokens=1000, cache=False)
        self.respond = respond
        self.fail = fail
        self.calls = 0
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        text = "\n".join(m["content"] for m in messages)
        with self._lock:
            self.calls += 1
            self.prompts.append(text)
        if self.fail is not None:
            self.fail(text)
        values = self.respond(output_fields(messages), messages)
        content = "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()) + "\n\n[[ ## completed ## ]]"
        usage = {"prompt_tokens": len(text) // 4, "completion_tokens": len(content) // 4, "total_tokens": 0}
        message = SimpleNamespace(content=content, tool_calls=None)
        choice = SimpleNamespace(message=message, finish_reason="stop", logprobs=None)
        return SimpleNamespace(choices=[choice], usage=usage, model=self.model, cache_hit=False)

    def __deepcopy__(self, memo):
        return self  # shared counters, like a client

    def __getstate__(self):  # travels to executor workers (the lock stays behind)
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def last_user(messages: list[dict]) -> str:
    return messages[-1]["content"]


def field_value(messages: list[dict], name: str) -> str:
    """The value of input field ``name`` in the last user message."""
    text = last_user(messages)
    match = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)", text, re.S)
    return match.group(1).strip() if match else ""

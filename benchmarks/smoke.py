"""Scripted fake LMs for the runner's CI smoke test. Their numbers mean nothing: never report them."""

from __future__ import annotations

import dspy


class ScriptedLM(dspy.BaseLM):
    """Answers every output field with a fixed text (a ReAct step: ``finish``); enough to drive every
    optimizer's control flow."""

    def __init__(self, model: str, text: str, latency: float = 0.0):
        super().__init__(model=model, model_type="chat", temperature=0.0, max_tokens=100, cache=False)
        self.text = text
        self.latency = latency  # seconds per call, to stand in for a real model's wait

    def forward(self, prompt=None, messages=None, **kwargs):
        import re
        import time
        from types import SimpleNamespace

        time.sleep(self.latency)
        messages = messages or [{"content": prompt or ""}]
        system = messages[0]["content"]
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4  # ~4 characters per token
        block = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
        fields = re.findall(r"\d+\. `(\w+)`", block) or ["answer"]
        react = {"next_tool_name": "finish", "next_tool_args": "{}"}  # a dspy.ReAct agent finishes at once
        content = "\n\n".join(f"[[ ## {f} ## ]]\n{react.get(f, self.text)}" for f in fields)
        content += "\n\n[[ ## completed ## ]]"
        message = SimpleNamespace(content=content, tool_calls=None)
        return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop", logprobs=None)],
                               usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4},
                               model=self.model, cache_hit=False)


def fake_lms():
    return ScriptedLM("fake/task", "True"), ScriptedLM("fake/optimizer", "Answer with the option text exactly.")

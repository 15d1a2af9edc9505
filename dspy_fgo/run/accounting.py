"""Counting LM calls and tokens per role (task model, optimizer model, embedder).

A ``RoleMeter`` is installed in ``dspy.context`` as both the usage tracker and a callback, so it
sees every LM call made inside that context, on any thread DSPy starts, and through LM copies
(MIPROv2 calls ``prompt_model.copy(...)``, whose history the original LM never sees). Cache hits
count as calls but carry no billed tokens, as in DSPy.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import UsageTracker


@dataclass
class RoleUsage:
    calls: int = 0
    billed_calls: int = 0  # calls that reached the provider (not served by the cache)
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    peak_prompt_tokens: int = 0  # the largest single prompt: FGO's claim is that it stays bounded
    # Of prompt_tokens, those the provider served from its prompt cache (OpenAI-style
    # ``prompt_tokens_details.cached_tokens``; llama.cpp reports the prefix it reused): what a call
    # shares with the one before it costs less, in money on hosted APIs and in time on a local server.
    cached_prompt_tokens: int = 0
    cost_usd: float = 0.0  # by LiteLLM's price table; 0 for models it has no price for (local ones)

    def to_dict(self) -> dict:
        return asdict(self)


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for one call by LiteLLM's price table, or None when it has no price for ``model``."""
    name = priced_name(model)
    if name is None:
        return None
    import litellm

    prompt_cost, completion_cost = litellm.cost_per_token(model=name, prompt_tokens=prompt_tokens,
                                                          completion_tokens=completion_tokens)
    return prompt_cost + completion_cost


@functools.lru_cache(maxsize=256)
def priced_name(model: str) -> str | None:
    """``model`` as LiteLLM prices it (without a role suffix such as ``@optimizer``), or None."""
    import litellm

    litellm.suppress_debug_info = True  # an unpriced (local) model is expected here, not worth a banner
    for name in dict.fromkeys((model, model.rsplit("@", 1)[0])):
        try:
            litellm.cost_per_token(model=name, prompt_tokens=1, completion_tokens=1)
            return name
        except Exception:
            continue
    return None


class RoleMeter(UsageTracker, BaseCallback):
    """Thread-safe counter for one role, in total and per model name.

    Shared, never copied, by DSPy's parallel workers. The per-model split lets a caller separate
    roles inside a third-party optimizer (MIPROv2, GEPA) when its task and prompt models differ.
    """

    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.usage = RoleUsage()
        self.by_model: dict[str, RoleUsage] = {}
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):
        # DSPy's ParallelExecutor deep-copies the usage tracker per worker; we want one shared tally.
        return self

    def _tallies(self, model: str) -> tuple[RoleUsage, RoleUsage]:
        return self.usage, self.by_model.setdefault(model, RoleUsage())

    def add_usage(self, lm: str, usage_entry: dict) -> None:
        prompt = int(usage_entry.get("prompt_tokens") or 0)
        completion = int(usage_entry.get("completion_tokens") or 0)
        details = usage_entry.get("prompt_tokens_details") or {}
        cached = int((details.get("cached_tokens") if isinstance(details, dict)
                      else getattr(details, "cached_tokens", 0)) or 0)
        cost = price(lm, prompt, completion) or 0.0
        with self._lock:
            for tally in self._tallies(lm):
                tally.billed_calls += 1
                tally.cost_usd += cost
                tally.prompt_tokens += prompt
                tally.cached_prompt_tokens += cached
                tally.completion_tokens += completion
                tally.peak_prompt_tokens = max(tally.peak_prompt_tokens, prompt)

    def on_lm_start(self, call_id, instance, inputs):
        with self._lock:
            self._pending[call_id] = getattr(instance, "model", "unknown")

    def on_lm_end(self, call_id, outputs, exception=None):
        with self._lock:
            for tally in self._tallies(self._pending.pop(call_id, "unknown")):
                tally.calls += 1
                if exception is not None:
                    tally.errors += 1

    def absorb(self, by_model: dict[str, dict]) -> None:
        """Add usage measured elsewhere (a remote partition), given per model as RoleUsage dicts."""
        with self._lock:
            for model, usage in by_model.items():
                for tally in self._tallies(model):
                    for name, value in usage.items():
                        if name == "peak_prompt_tokens":
                            tally.peak_prompt_tokens = max(tally.peak_prompt_tokens, value)
                        else:
                            setattr(tally, name, getattr(tally, name) + value)

    def count_calls(self, calls: int = 1, errors: int = 0) -> None:
        """For roles whose calls do not go through ``dspy.LM`` (plain embedding callables)."""
        with self._lock:
            self.usage.calls += calls
            self.usage.errors += errors


class _Tee:
    """A usage tracker that reports to two trackers (ours and one installed around us)."""

    def __init__(self, *trackers):
        self.trackers = trackers

    def __deepcopy__(self, memo):
        return self

    def add_usage(self, lm: str, usage_entry: dict) -> None:
        for tracker in self.trackers:
            tracker.add_usage(lm, usage_entry)


class Meters:
    """One meter per role."""

    ROLES = ("task", "optimizer", "embedder", "inner")  # inner: a teleprompter FGO runs per partition

    def __init__(self):
        self.by_role = {role: RoleMeter(role) for role in self.ROLES}

    def __getitem__(self, role: str) -> RoleMeter:
        return self.by_role[role]

    def totals(self) -> tuple[int, int, float]:
        """(LM calls, prompt + completion tokens, US dollars) over every role."""
        usage = [meter.usage for meter in self.by_role.values()]
        return (sum(u.calls for u in usage), sum(u.prompt_tokens + u.completion_tokens for u in usage),
                sum(u.cost_usd for u in usage))

    @contextmanager
    def metered(self, role: str, lm: dspy.BaseLM | None = None):
        """Run the block with ``lm`` (if given) as the LM, counting its calls under ``role``.

        Meters already installed around us (a benchmark's, an outer optimizer's) keep counting too.
        """
        meter = self.by_role[role]
        outer = dspy.settings.usage_tracker
        tracker = meter if outer is None or outer is meter else _Tee(meter, outer)
        callbacks = [c for c in dspy.settings.callbacks if c is not meter] + [meter]
        overrides = {"usage_tracker": tracker, "callbacks": callbacks}
        if lm is not None:
            overrides["lm"] = lm
        with dspy.context(**overrides):
            yield meter

    def spent(self) -> dict[str, dict[str, int]]:
        """The running totals a stage's share is measured by: calls, billed calls and tokens per role."""
        return {role: {k: getattr(meter.usage, k)
                       for k in ("calls", "billed_calls", "prompt_tokens", "cached_prompt_tokens", "completion_tokens")}
                for role, meter in self.by_role.items()}

    def to_dict(self) -> dict:
        """Usage per role; a role whose calls went to several models also lists them (``by_model``)."""
        out = {}
        for role, meter in self.by_role.items():
            out[role] = meter.usage.to_dict()
            if len(meter.by_model) > 1:
                out[role]["by_model"] = {m: u.to_dict() for m, u in sorted(meter.by_model.items())}
        return out


class Counters:
    """Thread-safe named event counts for the report (prompt trims, rejected proposals, ...)."""

    def __init__(self):
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] = self._counts.get(name, 0) + n

    def absorb(self, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            self.add(name, n)

    def to_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

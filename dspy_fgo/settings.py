"""Every setting of a compile, validated once into a frozen object; FGO's presets.

``Settings`` are those of every optimizer here (FGO and the paper's baselines), ``FGOSettings``
add FGO's. The meaning of each is documented on ``dspy_fgo.FGO``.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from dataclasses import dataclass, fields
from typing import Any, Callable

import dspy

from dspy_fgo.significance import Z

CLUSTERINGS = ("kmeans", "spectral", "bisecting", "none")
ROUTES = (False, True, "demos", "auto")
# Presets trade optimizer calls for search, as MIPROv2's and GEPA's ``auto`` do; explicit settings
# override them. "medium" is the defaults. Their cost: the proposer-quality benchmark, benchmarks/README.md.
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"epochs": 1, "proposals": 2, "min_failures": 2},
    "medium": {},
    "heavy": {"epochs": 4, "proposals": 5},
}


@dataclass(frozen=True)
class Settings:
    """The settings every optimizer here shares."""

    metric: Callable
    epochs: int = 3
    prompt_model: dspy.BaseLM | None = None
    task_model: dspy.BaseLM | None = None
    num_threads: int = 4
    seed: int = 0
    max_errors: int | None = None
    max_prompt_tokens: int | None = None
    critique_successes: int = 1
    critique: str = "batch"
    max_lm_calls: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    optimize_tools: bool = False
    progress: bool | None = None
    success_threshold: float = 0.5

    def __post_init__(self):
        if not callable(self.metric):
            raise TypeError(f"metric must be callable as metric(example, prediction, trace=None); got {self.metric!r}")
        check_int("epochs", self.epochs, 0)
        check_int("num_threads", self.num_threads, 1)
        check_int("seed", self.seed, 0)
        check_int("max_errors", self.max_errors, 0, optional=True)
        check_int("max_prompt_tokens", self.max_prompt_tokens, 1000, optional=True)
        check_int("critique_successes", self.critique_successes, 0)
        check_int("max_lm_calls", self.max_lm_calls, 1, optional=True)
        if self.critique not in ("each", "batch"):
            raise ValueError(f"critique must be 'each' (one call per run, the paper's) or 'batch'; got {self.critique!r}")
        check_int("max_tokens", self.max_tokens, 1, optional=True)
        if self.max_cost is not None and not is_number(self.max_cost, above=0):
            raise ValueError(f"max_cost must be a positive number of US dollars; got {self.max_cost!r}")
        for name in ("prompt_model", "task_model"):
            lm = getattr(self, name)
            if lm is not None and not isinstance(lm, dspy.BaseLM):
                raise TypeError(f"{name} must be a dspy.LM (or dspy.BaseLM); got {type(lm).__name__}")
        if not is_number(self.success_threshold, above=0, at_most=1):
            raise ValueError(f"success_threshold must be a score above 0 and at most 1; got {self.success_threshold!r}")
        self._set(success_threshold=float(self.success_threshold), optimize_tools=bool(self.optimize_tools))

    @classmethod
    def build(cls, metric: Callable, auto: str | None = None, **given) -> Settings:
        """The settings from a preset (if any) and the user's own, which override it."""
        names = {f.name for f in fields(cls)} - {"metric"}
        unknown = sorted(set(given) - names)
        if unknown:
            raise TypeError(f"unknown setting{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                            f"the settings are: {', '.join(sorted(names))}")
        if auto is not None and auto not in PRESETS:
            raise ValueError(f"auto must be one of {tuple(PRESETS)} or None; got {auto!r}")
        preset = {k: v for k, v in PRESETS.get(auto, {}).items() if k in names}
        return cls(metric=metric, **{**preset, **given})

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def _set(self, **values) -> None:
        """Normalise a validated value (the object is frozen to everyone else)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class FGOSettings(Settings):
    """FGO's settings: the shared ones and those of dividing, merging and routing."""

    partition_by: Any = None
    n_partitions: int | None = None
    min_partition_size: int = 2
    merge_threshold: int = 3
    clustering: str = "kmeans"
    embedder: Callable | None = None
    inner: Callable[[int], object] | None = None
    checkpoint_dir: str | None = None
    executor: Executor | None = None
    max_demos: int = 4
    balance_demos: bool = True
    proposals: int = 3
    route: bool | str = "auto"
    nearest_demos: bool | None = None
    accept_z: float = Z
    min_failures: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not is_number(self.accept_z, at_least=0, at_most=10):
            raise ValueError(f"accept_z must be a number from 0 (any gain) to 10; got {self.accept_z!r}")
        for name, low in (("min_failures", 1), ("max_demos", 0), ("proposals", 1), ("min_partition_size", 1),
                          ("merge_threshold", 2)):
            check_int(name, getattr(self, name), low)
        check_int("n_partitions", self.n_partitions, 1, optional=True)
        if not isinstance(self.balance_demos, bool):
            raise ValueError(f"balance_demos must be True or False; got {self.balance_demos!r}")
        if not any(self.route is r or (isinstance(r, str) and self.route == r) for r in ROUTES):
            raise ValueError(f"route must be one of {ROUTES}; got {self.route!r}")
        self._set(accept_z=float(self.accept_z), nearest_demos=self._nearest_demos(),
                  checkpoint_dir=None if self.checkpoint_dir is None else str(self.checkpoint_dir))
        if self.clustering not in CLUSTERINGS:
            raise ValueError(f"clustering must be one of {CLUSTERINGS}; got {self.clustering!r}")
        if self.embedder is not None and not callable(self.embedder):
            raise TypeError("embedder must be a dspy.Embedder or a callable from texts to vectors")
        inner = self.inner
        if inner is not None and (not callable(inner) or (hasattr(inner, "compile") and not isinstance(inner, type))):
            raise TypeError("inner must be a factory seed -> teleprompter, e.g. "
                            "lambda seed: dspy.MIPROv2(metric, auto='light', seed=seed); got an instance or non-callable")
        if self.executor is not None and not callable(getattr(self.executor, "submit", None)):
            raise TypeError("executor must be a concurrent.futures.Executor (anything with submit(fn, *args))")

    @property
    def merged_demos(self) -> int:
        """The most demos per predictor a merge pools; 0 (keep the largest child's count) with
        ``inner=``, whose optimizer chose its own number."""
        return 0 if self.inner else self.max_demos

    @property
    def routes_demos(self) -> bool:
        """Whether merges decide instructions only and demos are routed per input (for ``"auto"``:
        the routed program, weighed against the merged one at the end)."""
        return self.route is True or self.route in ("demos", "auto")

    def _nearest_demos(self) -> bool:
        """Nearest demos default to on wherever demos are routed and kept."""
        nearest = self.nearest_demos
        if nearest is None:
            return self.routes_demos and self.max_demos > 0
        if not isinstance(nearest, bool):
            raise ValueError(f"nearest_demos must be True, False or None (on with routed demos); got {nearest!r}")
        if nearest and (not self.routes_demos or not self.max_demos):
            raise ValueError("nearest_demos=True picks each input's demos from its partition's pool: it needs "
                             f"route='demos', 'auto' or True, and max_demos > 0; got route={self.route!r}, "
                             f"max_demos={self.max_demos}")
        return nearest


def is_number(value, *, above: float | None = None, at_least: float | None = None, at_most: float | None = None) -> bool:
    """A real number (not a bool) within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return ((above is None or value > above) and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most))


def check_int(name: str, value, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")

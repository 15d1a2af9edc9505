"""Running the program and the optimizer LM: threads, traces, scores, and an evaluation cache.

One ``Runtime`` serves a whole compile. It bounds the LM calls in flight with one semaphore, so
partitions running in parallel and examples running in parallel inside them never multiply the
concurrency the user asked for, and it remembers every (candidate, example) score so a candidate
is never run twice on the same example (merge validation reuses the partition runs).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import dspy
from dspy.dsp.utils.settings import thread_local_overrides

from dspy_fgo.candidate import Candidate, apply_candidate, candidate_key, without_own_demos
from dspy_fgo.run.accounting import Meters
from dspy_fgo.run.progress import Progress

logger = logging.getLogger("dspy_fgo")


# Which work an LM call belongs to: lower goes first. FGO sets a partition's index, so partitions
# finish (and are checkpointed) in order instead of all advancing in lockstep.
PRIORITY: contextvars.ContextVar[int] = contextvars.ContextVar("dspy_fgo_priority", default=0)


class PrioritySlots:
    """At most ``n`` holders at once; a freed slot goes to the waiter with the lowest priority
    (first come among equals), so no slot idles while work waits, and earlier work finishes first."""

    def __init__(self, n: int):
        self._free = n
        self._waiting: list[tuple[int, int]] = []
        self._tickets = itertools.count()
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, priority: int = 0):
        with self._cond:
            ticket = (priority, next(self._tickets))
            heapq.heappush(self._waiting, ticket)
            self._cond.wait_for(lambda: self._free > 0 and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cond.notify_all()  # the next waiter may take another free slot
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


@dataclass
class Step:
    """One predictor call inside a program run."""

    predictor: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class Trajectory:
    """One run of the program on one example, scored: what the critique step reads."""

    key: Any
    example: dspy.Example
    prediction: Any
    steps: list[Step] = field(default_factory=list)
    score: float = 0.0
    feedback: str | None = None  # from a metric that returns dspy.Prediction(score=..., feedback=...)
    error: str | None = None
    solved: bool | None = None  # scored at least the optimizer's ``success_threshold`` (default 1) without error

    def __post_init__(self):
        if self.solved is None:
            self.solved = self.score >= 1.0 and self.error is None


def score_of(result: Any) -> tuple[float, str | None]:
    """A metric result (bool, number, or Prediction with score/feedback) as (score, feedback)."""
    if hasattr(result, "score"):
        return float(result.score), getattr(result, "feedback", None)
    return float(result), None


@dataclass(frozen=True)
class Limits:
    """A soft budget over all roles: LM calls, tokens, US dollars (``None``: no limit)."""

    calls: int | None = None
    tokens: int | None = None
    cost: float | None = None

    def reached(self, calls: int, tokens: int, cost: float) -> bool:
        return ((self.calls is not None and calls >= self.calls)
                or (self.tokens is not None and tokens >= self.tokens)
                or (self.cost is not None and cost >= self.cost))

    def left(self, calls: int, tokens: int, cost: float) -> Limits:
        def rest(limit, used):
            return None if limit is None else max(0, limit - used)

        return Limits(rest(self.calls, calls), rest(self.tokens, tokens), rest(self.cost, cost))


class Runtime:
    def __init__(self, *, student: dspy.Module, metric: Callable, task_lm: dspy.BaseLM | None,
                 prompt_lm: dspy.BaseLM | None, meters: Meters, num_threads: int, max_errors: int | None,
                 limits: Limits = Limits(), success_threshold: float = 1.0):
        self.student = student
        self.success_threshold = success_threshold
        self.metric = metric
        self.task_lm = task_lm
        self.prompt_lm = prompt_lm
        self.meters = meters
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.limits = limits
        self.slots = PrioritySlots(num_threads)
        self.progress = Progress(False, meters)  # the optimizer installs its own
        self._cache: dict[tuple[str, Any], Trajectory] = {}
        self._lock = threading.Lock()
        self.program_errors = 0
        self.metric_errors = 0

    def spec(self) -> dict[str, Any]:
        """What builds an equal Runtime elsewhere (an executor's worker): ``Runtime(meters=..., **spec)``.

        The budgets are what is left of this run's, so a job on another machine stops where this
        run would; several jobs in flight may together overshoot by their in-flight work, as
        threads here do (the budget is soft)."""
        return {"student": self.student, "metric": self.metric, "task_lm": self.task_lm, "prompt_lm": self.prompt_lm,
                "num_threads": self.num_threads, "max_errors": self.max_errors,
                "limits": self.limits.left(*self.meters.totals()), "success_threshold": self.success_threshold}

    # -- budgets ---------------------------------------------------------------------------
    def exhausted(self) -> bool:
        """True once the LM-call, token or cost budget is spent. The budget is soft: callers stop
        starting new work, and what is in flight finishes, so nothing half-done is kept."""
        if self.limits == Limits():
            return False
        return self.limits.reached(*self.meters.totals())

    # -- threads ---------------------------------------------------------------------------
    def map(self, fn: Callable, items: Sequence) -> list:
        """``[fn(x) for x in items]`` on threads, in order, carrying DSPy's context into them."""
        items = list(items)
        if len(items) <= 1 or self.num_threads <= 1:
            return [fn(item) for item in items]
        parent = thread_local_overrides.get().copy()
        priority = PRIORITY.get()

        def run(item):
            PRIORITY.set(priority)
            token = thread_local_overrides.set(parent.copy())
            try:
                return fn(item)
            finally:
                thread_local_overrides.reset(token)

        with ThreadPoolExecutor(max_workers=min(len(items), self.num_threads)) as pool:
            return list(pool.map(run, items))

    # -- the task model --------------------------------------------------------------------
    def evaluate(self, candidate: Candidate, items: Sequence[tuple[Any, dspy.Example]]) -> list[Trajectory]:
        """Run the candidate on each (key, example) and score it; cached per (candidate, key).

        Each example runs without its own demo, wherever the score is taken: shown its answer, a
        run copies it, and a candidate carrying training examples as demos would score as solved
        the very examples it was built from."""

        ckey = candidate_key(candidate)
        todo = [(k, ex) for k, ex in items if (ckey, k) not in self._cache]
        programs: dict[str, tuple[dspy.Module, dict]] = {}  # one program per demo variant, all run together
        jobs = []
        for k, ex in todo:
            own = without_own_demos(candidate, ex)
            if (vkey := candidate_key(own)) not in programs:
                program = apply_candidate(self.student, own)
                programs[vkey] = (program, {id(p): n for n, p in program.named_predictors()})
            jobs.append((*programs[vkey], k, ex))
        with self.meters.metered("task", self.task_lm):
            done = self.map(lambda job: self._run_one(*job), jobs)
        with self._lock:
            for trajectory in done:
                self._cache[(ckey, trajectory.key)] = trajectory
        return [self._cache[(ckey, k)] for k, _ in items]

    def item_scores(self, candidate: Candidate, items: Sequence[tuple[Any, dspy.Example]]) -> list[float]:
        """The candidate's score on each item, in order (paired comparisons need them one by one)."""
        return [trajectory.score for trajectory in self.evaluate(candidate, items)]

    def _run_one(self, program: dspy.Module, names: dict, key: Any, example: dspy.Example) -> Trajectory:
        with self.slots.hold(PRIORITY.get()), dspy.context(trace=[]):
            try:
                prediction = program(**example.inputs())
                error = None
            except Exception as exc:  # a failed run is a score of 0, not the end of the compile
                prediction, error = None, f"{type(exc).__name__}: {exc}"
                logger.debug("program failed on example %s: %s", key, error)
            trace = list(dspy.settings.trace)
        steps = [Step(names.get(id(p), type(p).__name__), dict(i), _as_dict(o)) for p, i, o in trace]
        trajectory = Trajectory(key=key, example=example, prediction=prediction, steps=steps, error=error)
        if error is not None:
            self._count_error("program")
            return trajectory
        try:
            trajectory.score, trajectory.feedback = score_of(self.metric(example, prediction, None))
            trajectory.solved = trajectory.score >= self.success_threshold
        except Exception as exc:
            trajectory.error = f"metric raised {type(exc).__name__}: {exc}"
            logger.debug("metric failed on example %s: %s", key, trajectory.error)
            self._count_error("metric")
        return trajectory

    def _count_error(self, kind: str) -> None:
        # Program errors (timeouts, rate limits, unparseable outputs after DSPy's retries) score 0
        # and the run goes on; metric errors are bugs in user code, so they stop the run past
        # max_errors, as dspy.Evaluate does.
        with self._lock:
            if kind == "program":
                self.program_errors += 1
                return
            self.metric_errors += 1
            errors = self.metric_errors
        limit = self.max_errors if self.max_errors is not None else dspy.settings.max_errors
        if errors > limit:
            raise RuntimeError(
                f"dspy_fgo: the metric raised {errors} times, more than max_errors={limit}; "
                "fix the metric or set FGO(max_errors=...) (each error is in the debug log)."
            )

    # -- the optimizer model ---------------------------------------------------------------
    def ask(self, signature: type[dspy.Signature], max_tokens: int | None = None, rollout: int | None = None,
            **inputs) -> dspy.Prediction | None:
        """One optimizer-LM call; None if it fails (the caller keeps what it had).

        ``rollout`` asks for a distinct sample of the same prompt: DSPy's ``rollout_id``, offset by
        the optimizer LM's own (a benchmark seed), so that seeds keep sampling different texts."""
        config = {"max_tokens": max_tokens} if max_tokens else {}
        if rollout is not None:
            base = (getattr(self.prompt_lm, "kwargs", None) or {}).get("rollout_id") or 0
            config["rollout_id"] = int(base) * 1000 + rollout
        with self.slots.hold(PRIORITY.get()), self.meters.metered("optimizer", self.prompt_lm):
            try:
                return dspy.Predict(signature)(**inputs, config=config)
            except Exception as exc:
                logger.warning("optimizer call %s failed: %s: %s", signature.__name__, type(exc).__name__, exc)
                return None


def mean(scores: Sequence[float]) -> float:
    """The mean of per-item scores (0 for none): every score here is a mean of ``item_scores``."""
    return sum(scores) / len(scores) if scores else 0.0


def mean_score(trajectories: Sequence[Trajectory]) -> float:
    return mean([t.score for t in trajectories])


def _as_dict(outputs: Any) -> dict[str, Any]:
    if hasattr(outputs, "items"):
        return dict(outputs.items())
    return {"output": outputs}

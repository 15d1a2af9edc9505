"""What FGO and the paper's baselines share: settings, input checks, a run's session, the final
choice, and the report. Each optimizer adds only its own way of spending the LM calls."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from dspy_fgo.candidate import Candidate
from dspy_fgo.optimize.prompts import Budget, budget_for
from dspy_fgo.report.report import Report
from dspy_fgo.run.accounting import Counters, Meters, priced_name
from dspy_fgo.run.progress import Progress, wanted
from dspy_fgo.run.runtime import Limits, Runtime
from dspy_fgo.settings import Settings
from dspy_fgo.significance import clearly_better
from dspy_fgo.tools import agents

logger = logging.getLogger("dspy_fgo")

UNCHANGED = "instructions unchanged"  # FGO's final-check reference: the user's instructions


@dataclass
class Session:
    """Everything one compile needs, made fresh per compile."""

    student: dspy.Module
    trainset: list
    valset: list | None
    rt: Runtime
    budget: Budget
    meters: Meters
    counters: Counters
    timings: dict[str, float] = field(default_factory=dict)
    stage_usage: dict[str, dict] = field(default_factory=dict)  # stage -> role -> what that stage spent

    def items(self, indices=None) -> list[tuple[int, dspy.Example]]:
        """(key, example) pairs of the trainset; the key is the example's position."""
        indices = range(len(self.trainset)) if indices is None else indices
        return [(i, self.trainset[i]) for i in indices]

    def val_items(self, indices=None) -> list[tuple[Any, dspy.Example]]:
        """(key, example) pairs of the valset; the key is ``"val:<position>"``."""
        indices = range(len(self.valset or [])) if indices is None else indices
        return [(f"val:{i}", self.valset[i]) for i in indices]

    def items_of(self, keys) -> list[tuple[Any, dspy.Example]]:
        """The (key, example) pairs for keys of either kind: trainset positions and ``"val:<i>"``."""
        return [(k, self.valset[int(k[4:])]) if isinstance(k, str) else (k, self.trainset[k]) for k in keys]

    @contextmanager
    def stage(self, name: str):
        """Time a stage of the compile into ``timings``, and count its LM use into ``stage_usage``
        (stages run one after another, so the difference of the meters is the stage's own)."""
        start, before = time.perf_counter(), self.meters.spent()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            spent = self.stage_usage.setdefault(name, {})
            for role, now in self.meters.spent().items():
                delta = {k: v - before[role][k] for k, v in now.items()}
                if delta["calls"]:
                    spent[role] = {k: spent.get(role, {}).get(k, 0) + v for k, v in delta.items()}

    @property
    def progress(self) -> Progress:
        return self.rt.progress


class ReflectiveOptimizer(Teleprompter):
    """Settings shared by every optimizer here; see ``FGO`` for their meaning."""

    method = "reflective"

    settings_type = Settings

    def __init__(self, metric: Callable, **settings):
        super().__init__()
        self.settings = self.settings_type.build(metric, **settings)
        self.report_: Report | None = None

    def __getattr__(self, name: str):
        # Each setting reads as an attribute (``fgo.epochs``), as on DSPy's own teleprompters.
        settings = self.__dict__.get("settings")
        if settings is not None and name in settings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- a compile's life -------------------------------------------------------------------
    def _session(self, student, trainset, valset) -> Session:
        """Check every input (before any LM call) and set up the run."""
        task_lm = self._check_inputs(student, trainset, valset)
        prompt_lm = self.prompt_model or task_lm
        if self.max_cost is not None:
            unpriced = sorted({lm.model for lm in (task_lm, prompt_lm) if priced_name(lm.model) is None})
            if unpriced:
                raise ValueError(f"max_cost needs prices, but LiteLLM has none for {unpriced}: register them with "
                                 "litellm.register_model(...), or budget with max_tokens / max_lm_calls instead")
        meters = Meters()
        rt = Runtime(student=student, metric=self.metric, task_lm=task_lm, prompt_lm=prompt_lm, meters=meters,
                     num_threads=self.num_threads, max_errors=self.max_errors,
                     limits=Limits(self.max_lm_calls, self.max_tokens, self.max_cost),
                     success_threshold=self.success_threshold)
        rt.progress = Progress(wanted(self.progress), meters)
        return Session(student=student, trainset=list(trainset), valset=list(valset) if valset else None, rt=rt,
                       budget=budget_for(prompt_lm, self.max_prompt_tokens), meters=meters, counters=Counters())

    def _select(self, s: Session, entries: list[tuple[str, Candidate]], score=None,
                reference: str | None = None) -> tuple[Candidate, dict]:
        """The best of ``entries`` (label, candidate), on the valset if given, else on the trainset;
        ``score(label, candidate, items)`` gives per-item scores when a candidate is not run as it is.

        List the optimizer's own entries first, in order of preference (shortest prompt first), and
        the unoptimized program last as ``"unoptimized"``. The best-scoring entry (the earliest of
        equals) is returned, except that given a ``reference`` entry (FGO's: the user's instructions
        with its demos, the smallest change), the best must be ``clearly_better`` than it, or the
        reference is returned: the whole valset is where a paired test can confirm a change. The
        unoptimized program is returned only when it scores strictly best.
        """
        if s.rt.exhausted():
            label = entries[0][0]
            return entries[0][1], {"returned": label, "on": None, "scores": {},
                                   "reason": f"budget exhausted: {label} returned without a final comparison"}
        score = score or (lambda label, candidate, items: s.rt.item_scores(candidate, items))
        on = "valset" if s.valset else "trainset"
        items = s.val_items() if s.valset else s.items()
        s.progress.stage(f"{self.method}: final check on the {on}", total=len(entries), unit="candidate")
        with s.stage("select"):
            runs, scores = {}, {}
            for label, candidate in entries:
                runs[label] = score(label, candidate, items)
                scores[label] = sum(runs[label]) / len(items) if items else 0.0
                s.progress.advance(**{label: f"{scores[label]:.2f}"})
        optimized = [label for label, _ in entries if label != "unoptimized"] or [entries[0][0]]
        best = max(optimized, key=scores.get)  # the first max wins
        # The best of several on a few dozen examples often wins by chance: a change of instructions
        # is returned only when it clearly beats the instructions it would replace.
        pick = best
        if reference is not None and best != reference and not clearly_better(runs[best], runs[reference]):
            pick = reference
        if pick == best:
            reason = f"{best} scored best on the {on}" + (
                f", clearly above {reference}'s {scores[reference]:.3f}" if reference and best != reference else "")
        else:
            wins = sum(a > b for a, b in zip(runs[best], runs[pick]))
            losses = sum(a < b for a, b in zip(runs[best], runs[pick]))
            reason = (f"{pick} kept: {best} scored {scores[best]:.3f} on the {on} against {scores[pick]:.3f}, "
                      f"{wins} more right and {losses} fewer: within chance")
        if "unoptimized" in scores and scores["unoptimized"] > max(scores[label] for label in optimized):
            pick, reason = "unoptimized", (f"unoptimized scored {scores['unoptimized']:.3f} on the {on}, "
                                           f"above every optimized candidate")
        return dict(entries)[pick], {"returned": pick, "on": on, "scores": scores, "reason": reason}

    def _report(self, s: Session, **fields) -> Report:
        s.progress.close()
        s.counters.add("program_errors", s.rt.program_errors)
        s.counters.add("metric_errors", s.rt.metric_errors)
        if s.rt.exhausted():
            fields.setdefault("notes", []).append(
                f"budget reached (max_lm_calls={self.max_lm_calls}, max_tokens={self.max_tokens}, "
                f"max_cost={self.max_cost}): the run stopped "
                "starting new work and returned the best program found so far")
        report = Report(method=self.method, settings=self._settings(s), usage=s.meters.to_dict(),
                        timings=s.timings, stage_usage=s.stage_usage, events=s.counters.to_dict(), **fields)
        logger.info("%s done:\n%s", self.method, report.summary())
        from dspy_fgo.report.tracking import log_to_mlflow  # lazy: mlflow is optional

        log_to_mlflow(self, report)  # only inside an active MLflow run; never fails the compile
        return report

    def _check_inputs(self, student, trainset, valset) -> dspy.BaseLM:
        if not isinstance(student, dspy.Module):
            raise TypeError(f"student must be a dspy.Module; got {type(student).__name__}")
        if not student.named_predictors():
            raise ValueError("student has no predictors (dspy.Predict, ChainOfThought, ...): nothing to optimize")
        for name, data in (("trainset", trainset), ("valset", valset)):
            if data is None and name == "valset":
                continue
            if not isinstance(data, (list, tuple)) or not data:
                raise ValueError(f"{name} must be a non-empty list of dspy.Example")
            for i, example in enumerate(data):
                if not isinstance(example, dspy.Example):
                    raise TypeError(f"{name}[{i}] is a {type(example).__name__}, not a dspy.Example")
                if not example._input_keys:
                    raise ValueError(f"{name}[{i}] has no input fields: build it with dspy.Example(...).with_inputs(...)")
        if self.optimize_tools and not agents(student):
            raise ValueError("optimize_tools=True, but student has no agent with tools (a dspy.ReAct): nothing to "
                             "optimize there; leave optimize_tools off")
        task_lm = self.task_model or dspy.settings.lm
        if task_lm is None:
            raise ValueError("no LM configured: pass task_model=dspy.LM(...) or call dspy.configure(lm=...)")
        return task_lm

    def _settings(self, s: Session) -> dict[str, Any]:
        """The settings as plain JSON values (models by name only: never keys)."""
        own = {k: v for k, v in vars(self).items() if k not in ("settings", "report_", "partitioner")}
        values = {**self.settings.values(), **own}
        values["task_model"] = values["task_model"] or dspy.settings.lm
        values["max_prompt_tokens"] = s.budget.max_prompt_tokens
        return {k: plain(v) for k, v in values.items()}


def plain(value):
    """A JSON-friendly name for a setting's value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return getattr(value, "model", None) or getattr(value, "__name__", None) or type(value).__name__

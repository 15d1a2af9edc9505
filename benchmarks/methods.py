"""The optimizers the benchmark compares, each behind the same call.

Every method gets the same student, data, metric and models; it returns the optimized program
and a dict of method-specific facts (its report, demos used). Usage is metered outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import dspy


@dataclass
class Setup:
    metric: Callable
    task_lm: dspy.LM
    prompt_lm: dspy.LM
    seed: int
    num_threads: int
    partition_key: str | None = None  # how FGO and its baselines divide the trainset
    checkpoint_dir: str | None = None  # FGO resumes an interrupted cell from here
    epochs: int | None = None  # FGO's and the baselines' epochs; None keeps their default (3)
    # Demos per predictor for every method that gives demos (FGO's max_demos, MIPROv2's bootstrapped
    # and labeled demos each, KNNFewShot's k); None keeps each method's default (4). Long inputs
    # (whole UBL invoices) need fewer, or a prompt with 4 of them overflows the model's context.
    max_demos: int | None = None

    def epochs_setting(self) -> dict:
        return {} if self.epochs is None else {"epochs": self.epochs}

    def demos(self, default: int = 4) -> int:
        return default if self.max_demos is None else self.max_demos

    def demos_setting(self) -> dict:
        return {} if self.max_demos is None else {"max_demos": self.max_demos}


def unoptimized(student, train, val, s: Setup):
    return student.deepcopy(), {}


def _fgo(**settings):
    def run(student, train, val, s: Setup):
        from dspy_fgo import FGO

        optimizer = FGO(metric=s.metric, partition_by=s.partition_key, task_model=s.task_lm,
                        prompt_model=s.prompt_lm, seed=s.seed, num_threads=s.num_threads,
                        checkpoint_dir=s.checkpoint_dir, **s.demos_setting(), **s.epochs_setting(), **settings)
        program = optimizer.compile(student, trainset=train, valset=val)
        return program, {"report": optimizer.report_.to_dict()}

    return run


def fgo_mipro(student, train, val, s: Setup):
    """FGO with a small MIPROv2 (3 instruction candidates, 3 trials, up to 2 demos) in each partition."""
    from dspy_fgo import FGO
    from dspy_fgo.optimize.inner import compile_with

    def inner(seed):
        mipro = dspy.MIPROv2(metric=s.metric, prompt_model=s.prompt_lm, task_model=s.task_lm, auto=None,
                             num_candidates=3, max_bootstrapped_demos=2, max_labeled_demos=2, seed=seed,
                             num_threads=1, verbose=False)
        return compile_with(mipro, num_trials=3, minibatch=False)

    optimizer = FGO(metric=s.metric, partition_by=s.partition_key, task_model=s.task_lm, prompt_model=s.prompt_lm,
                    seed=s.seed, num_threads=s.num_threads, inner=inner)
    program = optimizer.compile(student, trainset=train, valset=val)
    return program, {"report": optimizer.report_.to_dict()}


def _mipro(with_demos: bool):
    def run(student, train, val, s: Setup):
        demos = s.demos() if with_demos else 0
        optimizer = dspy.MIPROv2(metric=s.metric, prompt_model=s.prompt_lm, task_model=s.task_lm, auto="light",
                                 max_bootstrapped_demos=demos, max_labeled_demos=demos, seed=s.seed,
                                 num_threads=s.num_threads, verbose=False)
        program = optimizer.compile(student, trainset=train, valset=val, requires_permission_to_run=False)
        return program, {"demos": sum(len(p.demos) for _, p in program.named_predictors())}

    return run


def gepa(student, train, val, s: Setup):
    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        score = float(s.metric(gold, pred, trace))
        expected = gold.get("answer")
        text = "Correct." if score >= 1 else f"Incorrect: the expected answer was {expected!r}, got {pred.get('answer')!r}."
        return dspy.Prediction(score=score, feedback=text)

    optimizer = dspy.GEPA(metric=feedback_metric, auto="light", reflection_lm=s.prompt_lm, seed=s.seed,
                          num_threads=s.num_threads)
    with dspy.context(lm=s.task_lm):
        program = optimizer.compile(student, trainset=train, valset=val)
    return program, {}


def knn_fewshot(student, train, val, s: Setup):
    """DSPy's KNNFewShot: per input, the 4 (``--max-demos``) nearest training examples as labeled demos, on the
    same offline TF-IDF space FGO's router uses (``dspy_fgo.baselines.knn_fewshot``)."""
    from dspy_fgo.baselines import knn_fewshot as nearest_labeled

    k = s.demos()
    return nearest_labeled(student, train, k), {"note": f"{k} nearest labeled demos per test input, chosen at inference"}


def _baseline(name: str):
    def run(student, train, val, s: Setup):
        import dspy_fgo

        optimizer = getattr(dspy_fgo, name)(metric=s.metric, task_model=s.task_lm, prompt_model=s.prompt_lm,
                                            seed=s.seed, num_threads=s.num_threads, **s.epochs_setting())
        program = optimizer.compile(student, trainset=train, valset=val)
        return program, {"report": optimizer.report_.to_dict()}

    return run


METHODS: dict[str, Callable] = {
    "unoptimized": unoptimized,
    "fgo": _fgo(),  # the defaults: route="auto", routed nearest demos only where they clearly beat one program
    "fgo-merged": _fgo(route=False),  # the paper's one merged program
    "fgo-route": _fgo(route=True),  # decided after the merge, from the fgo-nearest cell's partitions and merges
    "fgo-demos": _fgo(route="demos", nearest_demos=False),  # one merged instruction; its partition's demos
    "fgo-nearest": _fgo(route="demos", nearest_demos=True),  # ... its partition pool's nearest
    "fgo-batch": _fgo(critique="batch"),  # one critique call per partition and epoch
    "fgo-tools": _fgo(optimize_tools=True),  # agents: tool descriptions optimized with the instructions
    "fgo-mipro": fgo_mipro,
    "mipro-instructions": _mipro(False),
    "mipro-demos": _mipro(True),
    "gepa": gepa,
    "knn-fewshot": knn_fewshot,
    "all-at-once": _baseline("AllAtOnce"),
    "batch-wise": _baseline("BatchWise"),
    "bootstrapping": _baseline("Bootstrapping"),
}

# Cells that make the same partitions and merge nodes share one checkpoint directory, so the second
# reuses the first's units; the runner adds the first cell's cost to the second's (see run.py).
# route=True and route="auto" both score merges with routed nearest demos: the same merges as fgo-nearest.
SHARES_UNITS_WITH = {"fgo-route": "fgo-nearest", "fgo": "fgo-nearest"}

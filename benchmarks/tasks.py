"""Benchmark tasks: data splits, the program to optimize, the metric, and the partition key.

BBH-15: per task, in file order, the first ``n_train`` examples train, the next ``n_val`` validate,
the next ``n_test`` test (never seen by any optimizer). One program and one instruction for all
fifteen tasks, as in ../shared/ANCHORS.md; FGO partitions by task, as the paper partitions
ALFWorld by category.

UBL (``ubl``, ``ubl-agent``): generated UBL 2.1 invoices whose transport reference must be found,
a stand-in for the paper's private LogisticsQA (see ``dspy_fgo/data/ubl.py``). ``ubl`` reads the
whole document with ``dspy.Predict`` (or ``ChainOfThought`` with ``--program cot``); ``ubl-agent``
is a ``dspy.ReAct`` agent that gets only the invoice id and explores it with tools (``--program``
is ignored). FGO partitions by layout. As for BBH, where the sizes are per BBH task, the sizes are
per partition group, here per layout: ``--n-train 2 --n-val 2 --n-test 5`` gives 8/8/20 examples
over the 4 layouts (run.py's defaults 4/4/10 give 16/16/40). The splits are fixed index ranges of
data seed 0 (``split_ubl``), independent of the optimizer seeds; ``--data`` is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import dspy

from dspy_fgo.data import bbh_metric, bbh_program, load_bbh, split_bbh
from dspy_fgo.data.ubl import LAYOUTS, split_ubl, ubl_agent, ubl_metric, ubl_program


@dataclass
class Task:
    name: str
    train: list
    val: list
    test: list
    make_program: Callable[[], dspy.Module]
    metric: Callable
    partition_key: str | None
    group_of: Callable[[dspy.Example], str]  # for per-group test accuracy
    # Stop sequences for the task model. The agent's: small models, having written a tool call, go on
    # to invent its observation and the next steps (up to max_tokens, ~50 s a call on 2 cores);
    # DSPy's ChatAdapter keeps only the first value of each output field, so stopping loses nothing.
    stop: tuple[str, ...] = ()


def bbh15(program: str = "predict", n_train: int = 4, n_val: int = 4, n_test: int = 10, source=None) -> Task:
    train, val, test = split_bbh(load_bbh(source=source), n_train=n_train, n_val=n_val, n_test=n_test)
    return Task(
        name="bbh15",
        train=train,
        val=val,
        test=test,
        make_program=lambda: bbh_program(kind=program),
        metric=bbh_metric,
        partition_key="task",
        group_of=lambda ex: ex.task,
    )


def _ubl_task(name: str, agent: bool, make_program, n_train: int, n_val: int, n_test: int,
              stop: tuple[str, ...] = ()) -> Task:
    k = len(LAYOUTS)  # the sizes are per layout; layouts cycle with the index, so each split is balanced
    train, val, test = split_ubl(k * n_train, k * n_val, k * n_test, seed=0, agent=agent)
    return Task(name=name, train=train, val=val, test=test, make_program=make_program, metric=ubl_metric,
                partition_key="layout", group_of=lambda ex: ex.layout, stop=stop)


def ubl(program: str = "predict", n_train: int = 2, n_val: int = 2, n_test: int = 5, source=None) -> Task:
    """Predict (or CoT) over the whole invoice XML: ``document -> answer``. ``source`` is ignored."""
    return _ubl_task("ubl", False, lambda: ubl_program(kind=program), n_train, n_val, n_test)


def ubl_react(program: str = "predict", n_train: int = 2, n_val: int = 2, n_test: int = 5, source=None) -> Task:
    """The ReAct agent over the same documents: ``invoice_id -> answer``. ``program`` and ``source`` are ignored."""
    return _ubl_task("ubl-agent", True, lambda: ubl_agent(), n_train, n_val, n_test,
                     stop=("[[ ## observation", "[[ ## completed ## ]]"))


TASKS = {"bbh15": bbh15, "ubl": ubl, "ubl-agent": ubl_react}

"""Benchmark tasks: data splits, the program to optimize, the metric, and the partition key.

BBH-15: per task, in file order, the first ``n_train`` examples train, the next ``n_val`` validate,
the next ``n_test`` test (never seen by any optimizer). One program and one instruction for all
fifteen tasks, as in ../shared/ANCHORS.md; FGO partitions by task, as the paper partitions
ALFWorld by category.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import dspy

from dspy_fgo.data import bbh_metric, bbh_program, load_bbh, split_bbh


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


TASKS = {"bbh15": bbh15}

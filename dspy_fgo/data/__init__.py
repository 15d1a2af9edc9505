"""Benchmark data sets for dspy_fgo: BIG-bench (BBH-15) loaders, splits, metric and program."""

from dspy_fgo.data.bbh import TASKS, bbh_metric, bbh_program, format_question, load_bbh, split_bbh

__all__ = ["TASKS", "load_bbh", "split_bbh", "bbh_metric", "bbh_program", "format_question"]

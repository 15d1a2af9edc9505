"""Benchmark data sets for dspy_fgo: BIG-bench (BBH-15) loaders, splits, metric and program, and
generated UBL invoices (a LogisticsQA-style extraction task) with a Predict program and a ReAct agent."""

from dspy_fgo.data.bbh import TASKS, bbh_metric, bbh_program, format_question, load_bbh, split_bbh
from dspy_fgo.data.ubl import (
    Invoice,
    invoice,
    make_agent_examples,
    make_examples,
    split_ubl,
    ubl_agent,
    ubl_id,
    ubl_metric,
    ubl_program,
)

__all__ = [
    "TASKS", "load_bbh", "split_bbh", "bbh_metric", "bbh_program", "format_question",
    "Invoice", "invoice", "ubl_id", "make_examples", "make_agent_examples", "split_ubl", "ubl_metric",
    "ubl_program", "ubl_agent",
]

"""What a compile did: the report as plain data (``report``), its pictures (``plots``), and MLflow
logging (``tracking``)."""

from dspy_fgo.report.report import PartitionReport, Report

__all__ = ["PartitionReport", "Report"]

"""Log a compile to MLflow: settings as params, scores, usage and timings as metrics, the report
and its plots as artifacts under ``fgo/``.

Every optimizer here calls :func:`log_to_mlflow` once, when its report is ready. It logs into the
MLflow run the caller has started (``with mlflow.start_run(): fgo.compile(...)``), or, under
``mlflow.dspy.autolog(log_compiles=True)`` with no run active, into a run of its own, as autolog
does for DSPy's optimizers. Otherwise (MLflow not installed, no run, no autolog) it does nothing.
It never fails a compile: a logging error is a warning on the ``dspy_fgo.tracking`` logger.

A second compile inside the same run (whose ``fgo.*`` params are already set, and MLflow params
cannot change) is logged to a nested child run named after the method.
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("dspy_fgo.tracking")

PREFIX = "fgo."
_SECRET = re.compile(r"api_?key|secret|password|credential|auth", re.I)
_MAX_PARTITION_METRICS = 50
_USAGE_FIELDS = ("calls", "billed_calls", "errors", "prompt_tokens", "completion_tokens", "peak_prompt_tokens",
                 "cached_prompt_tokens", "cost_usd")


def log_to_mlflow(optimizer, report) -> str | None:
    """Log ``report`` (and ``optimizer``'s settings) to the active MLflow run.

    With no active run it logs only under ``mlflow.dspy.autolog(log_compiles=True)``, into a run
    of its own. Returns the id of the run logged to, or ``None`` when nothing was logged (MLflow
    not imported, no run and no autolog, or a logging error, which is warned about and swallowed).
    """
    # A run can only be active if the caller imported mlflow: checking sys.modules keeps a compile
    # without MLflow from paying for (or being changed by) importing it.
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or report is None:
        return None
    try:
        run = mlflow.active_run()
        if run is None:
            if not _autolog_compiles():
                return None
            with mlflow.start_run(run_name=report.method) as own:  # what autolog would have opened
                _log(mlflow, optimizer, report)
                return own.info.run_id
        if PREFIX + "method" in mlflow.get_run(run.info.run_id).data.params:  # a second compile in this run
            with mlflow.start_run(run_name=report.method, nested=True) as child:
                _log(mlflow, optimizer, report)
                return child.info.run_id
        _log(mlflow, optimizer, report)
        return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a compile
        logger.warning("could not log the %s report to MLflow: %s: %s",
                       getattr(report, "method", "FGO"), type(exc).__name__, exc)
        return None


def _autolog_compiles() -> bool:
    """True under ``mlflow.dspy.autolog(log_compiles=True)``.

    MLflow's DSPy autolog opens a run around ``compile`` only for direct subclasses of
    ``dspy.Teleprompter`` (it patches ``Teleprompter.__subclasses__()``), and FGO and the baselines
    are grandchildren, so their compiles run outside any run. Opening one here records them as
    autolog records MIPROv2's: one run per compile.
    """
    try:
        from mlflow.utils.autologging_utils import autologging_is_disabled, get_autologging_config
    except ImportError:
        return False
    return not autologging_is_disabled("dspy") and bool(get_autologging_config("dspy", "log_compiles", False))


def _log(mlflow, optimizer, report) -> None:
    mlflow.log_params(params(optimizer, report))
    mlflow.set_tags({PREFIX + "method": report.method, PREFIX + "returned": str(report.selection.get("returned"))})
    mlflow.log_metrics(metrics(report))
    mlflow.log_dict(report.to_dict(), "fgo/report.json")
    mlflow.log_text(report.summary(), "fgo/summary.txt")
    with tempfile.TemporaryDirectory(prefix="dspy-fgo-mlflow-") as tmp:
        for path in _plots(report, Path(tmp)):
            mlflow.log_artifact(str(path), artifact_path="fgo")


def params(optimizer, report) -> dict[str, str | int | float | bool | None]:
    """The settings as ``fgo.<name>`` params: simple values only, models by name, never secrets."""
    settings = dict(report.settings)
    out: dict[str, Any] = {PREFIX + "method": report.method}
    for key, value in settings.items():
        if _SECRET.search(key):
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            out[PREFIX + key] = value if not isinstance(value, str) else value[:500]
    return out


def metrics(report) -> dict[str, float]:
    """Scores, usage per role, timings and events as ``fgo.*`` metrics."""
    out: dict[str, float] = {}
    root = report.root
    if root is not None and root.get("score") is not None:
        out["fgo.score.root"] = root["score"]
    selection = report.selection or {}
    scores = selection.get("scores") or {}
    for label, score in scores.items():
        out[f"fgo.selection.{_name(label)}"] = score
    if "unoptimized" in scores:
        out["fgo.score.baseline"] = scores["unoptimized"]
    if selection.get("returned") in scores:
        out["fgo.score.selected"] = scores[selection["returned"]]
    if report.partitions:
        parts = report.partitions
        out["fgo.partitions.count"] = len(parts)
        out["fgo.partitions.mean_score_before"] = sum(p.score_before for p in parts) / len(parts)
        out["fgo.partitions.mean_score_after"] = sum(p.score_after for p in parts) / len(parts)
        for i, p in enumerate(parts[:_MAX_PARTITION_METRICS]):
            name = _name(p.name) or str(i)
            out[f"fgo.partition.{name}.score_before"] = p.score_before
            out[f"fgo.partition.{name}.score_after"] = p.score_after
    if report.tree:
        out["fgo.tree.nodes"] = len(report.tree)
        out["fgo.tree.merge_calls"] = sum(n.get("merge_calls") or 0 for n in report.tree)
    if report.steps:
        out["fgo.steps"] = len(report.steps)
    for role, usage in (report.usage or {}).items():
        for field in _USAGE_FIELDS:
            if isinstance(usage.get(field), (int, float)):
                out[f"fgo.usage.{_name(role)}.{field}"] = usage[field]
    for stage, seconds in (report.timings or {}).items():
        out[f"fgo.time.{_name(stage)}"] = seconds
    for event, count in (report.events or {}).items():
        out[f"fgo.events.{_name(event)}"] = count
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _plots(report, folder: Path) -> list[Path]:
    """The merge tree and the per-partition scores as PNGs, when matplotlib is installed."""
    try:
        from dspy_fgo.plots import plot_partitions, plot_tree

        made = []
        if report.tree:
            made.append(plot_tree(report, folder / "merge_tree.png"))
        if report.partitions:
            made.append(plot_partitions(report, folder / "partitions.png"))
        return made
    except ImportError:
        logger.info("matplotlib is not installed: no plots logged to MLflow")
        return []


def _name(text) -> str:
    """A metric-name-safe version of a label ("node 3" -> "node_3")."""
    return re.sub(r"[^\w.\-/]+", "_", str(text)).strip("_")

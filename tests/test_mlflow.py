"""MLflow tracking (dspy_fgo.report.tracking) against a real local sqlite tracking store, on the toy world."""

from __future__ import annotations

import importlib
import json
import logging
import sys

import dspy
import pytest

from conftest import exact, make_examples, TOY_Z
from dspy_fgo import FGO, Report
from dspy_fgo.report.tracking import log_to_mlflow

mlflow = pytest.importorskip("mlflow")

SECRET = "sk-test-not-a-real-key"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds); artifacts in tmp too."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    yield root
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def experiment(store, request):
    """A fresh experiment per test, so runs can be counted."""
    experiment_id = mlflow.create_experiment(request.node.name, artifact_location=str(store / request.node.name))
    mlflow.set_experiment(experiment_id=experiment_id)
    yield experiment_id
    while mlflow.active_run():  # a failed test must not leave a run open for the next
        mlflow.end_run()


def runs_of(experiment_id):
    return mlflow.MlflowClient().search_runs([experiment_id])


def fgo_for(task_lm, prompt_lm, **kw):
    kw.setdefault("accept_z", TOY_Z)
    return FGO(metric=exact, partition_by="category", task_model=task_lm, prompt_model=prompt_lm, epochs=1,
               num_threads=2, **kw)


def compile_toy(task_lm, prompt_lm, **kw):
    fgo = fgo_for(task_lm, prompt_lm, **kw)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta", "gamma"], 2))
    return fgo, program


def test_a_compile_in_an_active_run_logs_params_metrics_and_artifacts(experiment, task_lm, prompt_lm, tmp_path):
    task_lm.kwargs["api_key"] = SECRET  # an LM carrying a key: only its model name may be logged
    with mlflow.start_run() as run:
        fgo, _ = compile_toy(task_lm, prompt_lm)
    report = fgo.report_
    logged = mlflow.get_run(run.info.run_id)

    params = logged.data.params
    assert params["fgo.method"] == "FGO"
    assert params["fgo.partition_by"] == "category"
    assert params["fgo.epochs"] == "1" and params["fgo.merge_threshold"] == "3" and params["fgo.clustering"] == "kmeans"
    assert params["fgo.task_model"] == "fake/task" and params["fgo.prompt_model"] == "fake/optimizer"
    assert params["fgo.metric"] == "exact"
    assert all(key.startswith("fgo.") for key in params)
    assert not any(SECRET in value or "FakeLM" in value or "object at 0x" in value for value in params.values())

    metrics = logged.data.metrics
    assert metrics["fgo.score.root"] == pytest.approx(report.root["score"]) == pytest.approx(1.0)
    assert metrics["fgo.score.baseline"] == pytest.approx(report.selection["scores"]["unoptimized"]) == 0.0
    assert metrics["fgo.score.selected"] == pytest.approx(1.0)
    assert metrics["fgo.selection.root"] == pytest.approx(1.0)
    assert metrics["fgo.partition.alpha.score_after"] == 1.0 and metrics["fgo.partition.alpha.score_before"] == 0.0
    assert metrics["fgo.partitions.count"] == 3 and metrics["fgo.tree.nodes"] == len(report.tree)
    for role in ("task", "optimizer"):
        for field in ("calls", "billed_calls", "prompt_tokens", "completion_tokens", "peak_prompt_tokens"):
            assert metrics[f"fgo.usage.{role}.{field}"] == report.usage[role][field]
    assert metrics["fgo.usage.task.calls"] == task_lm.calls > 0
    assert metrics["fgo.usage.optimizer.calls"] == prompt_lm.calls > 0
    assert set(report.timings) == {k.removeprefix("fgo.time.") for k in metrics if k.startswith("fgo.time.")}
    assert logged.data.tags["fgo.method"] == "FGO" and logged.data.tags["fgo.returned"] == "root"

    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "fgo")}
    assert {"fgo/report.json", "fgo/summary.txt", "fgo/merge_tree.png", "fgo/partitions.png"} <= artifacts
    folder = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="fgo", dst_path=str(tmp_path))
    saved = json.loads((tmp_path / "fgo" / "report.json").read_text())
    assert Report.from_dict(saved).to_dict() == report.to_dict()
    assert SECRET not in json.dumps(saved)
    assert (tmp_path / "fgo" / "summary.txt").read_text() == report.summary()
    assert (tmp_path / "fgo" / "merge_tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", folder


def test_a_routed_compile_logs_its_routing(experiment):
    from fakes import FakeLM
    from test_route import compile_fgo, jealous_task

    with mlflow.start_run() as run:
        fgo, _ = compile_fgo(FakeLM(jealous_task), make_examples(["alpha", "beta"], 6), route=True)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.params["fgo.route"] == "True"
    assert logged.data.tags["fgo.returned"] == "routed"
    assert logged.data.metrics["fgo.events.partitions_routed"] == fgo.report_.events["partitions_routed"] == 1
    assert logged.data.metrics["fgo.score.selected"] == pytest.approx(fgo.report_.selection["scores"]["routed"])


def test_a_second_compile_in_the_same_run_goes_to_a_nested_run(experiment, task_lm, prompt_lm):
    with mlflow.start_run() as run:
        compile_toy(task_lm, prompt_lm)
        fgo, _ = compile_toy(task_lm, prompt_lm, merge_threshold=4)  # MLflow params cannot change in a run
    parent = mlflow.get_run(run.info.run_id)
    assert parent.data.params["fgo.merge_threshold"] == "3"
    children = [r for r in runs_of(experiment) if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
    assert len(children) == 1
    assert children[0].data.params["fgo.merge_threshold"] == "4"
    assert children[0].info.run_name == "FGO" and children[0].info.status == "FINISHED"
    assert children[0].data.metrics["fgo.score.root"] == pytest.approx(fgo.report_.root["score"])


def test_no_active_run_logs_nothing_and_the_compile_works(experiment, task_lm, prompt_lm):
    fgo, program = compile_toy(task_lm, prompt_lm)
    assert fgo.report_.root["score"] == 1.0 and "RULE-alpha" in program.signature.instructions
    assert runs_of(experiment) == []
    assert mlflow.active_run() is None
    assert log_to_mlflow(fgo, fgo.report_) is None


def test_without_mlflow_imported_nothing_is_imported_or_logged(monkeypatch, task_lm, prompt_lm):
    monkeypatch.delitem(sys.modules, "mlflow")
    fgo, _ = compile_toy(task_lm, prompt_lm)
    assert "mlflow" not in sys.modules  # a compile never imports it
    assert log_to_mlflow(fgo, fgo.report_) is None


def test_a_logging_failure_only_warns(experiment, task_lm, prompt_lm, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(mlflow, "log_metrics", broken)
    with caplog.at_level(logging.WARNING, logger="dspy_fgo.report.tracking"), mlflow.start_run():
        fgo, program = compile_toy(task_lm, prompt_lm)
    assert fgo.report_.root["score"] == 1.0 and "RULE-alpha" in program.signature.instructions
    warnings = [r for r in caplog.records if r.name == "dspy_fgo.report.tracking"]
    assert len(warnings) == 1 and "tracking server down" in warnings[0].getMessage()


@pytest.fixture
def autolog():
    settings = importlib.import_module("dspy.dsp.utils.settings")  # the module (dspy.dsp.utils.settings is an object)

    callbacks, track_usage = settings.main_thread_config["callbacks"], settings.main_thread_config["track_usage"]
    mlflow.dspy.autolog(log_compiles=True)  # configures dspy globally: callbacks and track_usage
    # conftest's dspy.context (no global LM) snapshots the global settings: let this test see autolog's.
    with dspy.context(callbacks=settings.main_thread_config["callbacks"], track_usage=True):
        yield
    mlflow.dspy.autolog(disable=True)
    dspy.configure(callbacks=callbacks, track_usage=track_usage)


def test_under_dspy_autolog_a_compile_records_one_run(experiment, autolog, task_lm, prompt_lm):
    """What ``mlflow.dspy.autolog(log_compiles=True)`` does with FGO (MLflow 3.x, DSPy 3.4).

    Autolog installs its tracing callback and wraps ``compile`` of the *direct* subclasses of
    ``dspy.Teleprompter`` only (``Teleprompter.__subclasses__()``): FGO, a grandchild, is not
    wrapped, so autolog itself opens no run for it and logs no ``best_model.json``. FGO's own
    tracking opens the run instead (named after the method) and logs what it logs inside a run.
    Autolog's traces of the LM calls are recorded too (FGO's compile is not marked as a compile
    for MLflow, so its calls are traced like inference).
    """
    from mlflow.dspy.callback import MlflowCallback

    assert any(isinstance(c, MlflowCallback) for c in dspy.settings.callbacks)
    fgo, program = compile_toy(task_lm, prompt_lm)
    assert fgo.report_.root["score"] == 1.0 and "RULE-alpha" in program.signature.instructions
    assert mlflow.active_run() is None  # the run was closed

    (run,) = runs_of(experiment)
    assert run.info.run_name == "FGO" and run.info.status == "FINISHED"
    assert run.data.params["fgo.method"] == "FGO" and run.data.params["fgo.task_model"] == "fake/task"
    assert run.data.metrics["fgo.score.root"] == 1.0
    assert run.data.metrics["fgo.usage.task.calls"] == task_lm.calls
    assert {"fgo/report.json", "fgo/merge_tree.png"} <= {a.path for a in mlflow.MlflowClient().list_artifacts(
        run.info.run_id, "fgo")}

    if hasattr(mlflow, "flush_trace_async_logging"):
        mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(return_type="list")
    assert traces, "autolog traced no LM call"
    spans = {span.name for trace in traces for span in trace.data.spans}
    assert "FakeLM.__call__" in spans


def test_under_dspy_autolog_a_compile_inside_a_run_logs_into_it(experiment, autolog, task_lm, prompt_lm):
    with mlflow.start_run() as run:
        compile_toy(task_lm, prompt_lm)
    (only,) = runs_of(experiment)
    assert only.info.run_id == run.info.run_id and only.data.params["fgo.method"] == "FGO"

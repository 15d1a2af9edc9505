"""Partitions on other processes: FGO(executor=...) gives the same result as the threaded run."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import dspy
import pytest

from conftest import TOY_Z, exact, make_examples, optimizer_respond, task_respond
from dspy_fgo import FGO, read_candidate
from fakes import FakeLM


def compile_with(executor=None, **settings):
    fgo = FGO(metric=exact, task_model=FakeLM(task_respond, model="fake/task"),
              prompt_model=FakeLM(optimizer_respond, model="fake/optimizer"), partition_by="category", epochs=2,
              seed=3, executor=executor, accept_z=TOY_Z, **settings)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a", "b", "c", "d"]))
    return fgo.report_, read_candidate(program)


def test_process_pool_equals_threads():
    threaded_report, threaded = compile_with()
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        remote_report, remote = compile_with(pool)
    assert remote == threaded
    assert [n["candidate"] for n in remote_report.tree] == [n["candidate"] for n in threaded_report.tree]
    # The workers' LM calls are in the report: the partitions' critiques and rewrites happened there.
    assert remote_report.usage["optimizer"]["calls"] == threaded_report.usage["optimizer"]["calls"]


def test_executor_must_submit():
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        FGO(metric=exact, executor=object())


def test_dask_local_cluster_equals_threads():
    distributed = pytest.importorskip("distributed")
    threaded_report, threaded = compile_with()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            # The workers import the test helpers by name, as a user's workers import the user's code.
            client.run(lambda: __import__("sys").path.insert(0, __import__("os").path.dirname(__file__)))
            remote_report, remote = compile_with(client.get_executor())
            # A budget travels with each job: the workers stop where a local run would.
            budgeted, _ = compile_with(client.get_executor(), max_lm_calls=6)
    assert remote == threaded
    assert remote_report.usage["optimizer"]["calls"] == threaded_report.usage["optimizer"]["calls"]
    full_calls = sum(u["calls"] for u in remote_report.usage.values())
    assert sum(u["calls"] for u in budgeted.usage.values()) < full_calls
    assert budgeted.events["jobs_stopped_by_budget"] > 0
    assert any("budget reached" in note for note in budgeted.notes)

"""One partition optimized as a job on another process or machine: ``FGO(executor=...)``.

Any ``concurrent.futures.Executor`` works (a process pool, ``dask.distributed.Client``, ...). The
job travels as one cloudpickle blob (DSPy signatures made from strings do not pickle with the
standard pickle), and comes back as plain JSON-able data: the partition's result, its LM usage per
role and model, and its events, which FGO adds to its own report.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from dspy_fgo.optimize.inner import optimize_with_inner
from dspy_fgo.optimize.reflect import optimize_module, result_to_dict
from dspy_fgo.run.accounting import Counters, Meters
from dspy_fgo.run.runtime import Runtime


def make_job(**job: Any) -> bytes:
    return cloudpickle.dumps(job)


def run_partition_job(blob: bytes) -> dict:
    """Run Algorithm 1 (or the inner teleprompter) on one partition, wherever this is called."""
    job = cloudpickle.loads(blob)
    meters, counters = Meters(), Counters()
    rt = Runtime(meters=meters, **job["runtime"])  # the same threads, error limits and budget as at home
    student = rt.student
    if job["inner"] is not None:
        result, by = optimize_with_inner(rt, job["inner"], job["seed"], student, job["start"], job["items"],
                                         job["checks"])
    else:
        result = optimize_module(rt, job["start"], job["items"], job["algorithm1"], checks=job["checks"],
                                 counters=counters)
        by = "FGO"
    if rt.exhausted():
        counters.add("jobs_stopped_by_budget")
    counters.add("program_errors", rt.program_errors)
    counters.add("metric_errors", rt.metric_errors)
    usage = {role: {model: u.to_dict() for model, u in meter.by_model.items()}
             for role, meter in meters.by_role.items()}
    return {"result": result_to_dict(result), "optimizer": by, "usage": usage, "events": counters.to_dict()}

"""Head-to-head benchmark: FGO against MIPROv2, GEPA and the paper's baselines.

    python -m benchmarks.run --methods unoptimized,fgo,mipro-instructions,mipro-demos --seeds 0,1,2

With no --task-model, the embedded local model (Qwen2.5-Coder-1.5B, ``pip install
"dspy-fgo[local]"``) is served on 127.0.0.1 and used for both roles. Each (method, seed) cell is
written to ``OUT/cells/`` as it finishes; a rerun skips finished cells, so an interrupted run
resumes. DSPy's disk cache stays on. ``results.json``, ``results.md`` and plots are rebuilt from
the cells at the end of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.attempts import Heartbeat, Marker, combine_usage  # noqa: E402
from benchmarks.methods import METHODS, SHARES_UNITS_WITH, Setup  # noqa: E402
from benchmarks.report import partial, write_summary  # noqa: E402
from benchmarks.tasks import TASKS  # noqa: E402
from dspy_fgo.run.accounting import RoleMeter  # noqa: E402
from dspy_fgo.candidate import read_candidate  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="unoptimized,fgo,mipro-instructions,mipro-demos",
                   help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--tasks", default="bbh15", help=f"comma-separated, from: {', '.join(TASKS)}")
    p.add_argument("--program", default="predict", choices=["predict", "cot"])
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--n-train", type=int, default=4, help="training examples per group: per BBH task, per UBL layout")
    p.add_argument("--n-val", type=int, default=4, help="validation examples per group: per BBH task, per UBL layout")
    p.add_argument("--n-test", type=int, default=10, help="test examples per group: per BBH task, per UBL layout")
    p.add_argument("--data", default=None, help="BBH JSONL directory (default: the vendored sample)")
    p.add_argument("--task-model", default=None, help="LiteLLM model for the program (default: local Qwen 1.5B)")
    p.add_argument("--prompt-model", default=None, help="LiteLLM model for the optimizer (default: the task model)")
    p.add_argument("--local-model", default="qwen2.5-coder-1.5b", help="embedded model when --task-model is unset")
    p.add_argument("--max-tokens", type=int, default=512, help="completion limit for the task model")
    p.add_argument("--prompt-max-tokens", type=int, default=1024, help="completion limit for the optimizer model")
    p.add_argument("--num-threads", type=int, default=4, help="LM calls in flight (the local server queues past its 2 slots)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs for FGO and the paper's baselines (default: theirs, 3); MIPROv2 and GEPA ignore it")
    p.add_argument("--max-demos", type=int, default=None,
                   help="demos per predictor for every method that gives demos (FGO's max_demos, MIPROv2 with "
                        "demos' bootstrapped and labeled demos each, KNNFewShot's k; default: theirs, 4); fewer "
                        "for long inputs, whose demos would overflow the model's context")
    p.add_argument("--out", default="benchmarks/results/run")
    p.add_argument("--partitions-from", default=None, metavar="DIR[:METHOD]",
                   help="an earlier results directory whose METHOD cells' (default fgo) finished partitions "
                        "(checkpoints) this run's FGO cells start from, so only the merge and the final check "
                        "are new; each cell records where its partitions came from and is marked as partial cost")
    p.add_argument("--fake", action="store_true", help="CI smoke: a scripted fake LM (its numbers mean nothing)")
    return p.parse_args(argv)


def no_straggler_copies() -> None:
    """DSPy's evaluator sends a second copy of a call still running after 120 s once at most 3 are
    left. On the 2-slot local server a whole-invoice call takes about that long, so the copy slows
    the original down and both are billed. Every baseline evaluates through it (MIPROv2's trials,
    every test pass) and FGO's own thread pool does not: off here, for every method alike."""
    evaluate = importlib.import_module("dspy.evaluate.evaluate")
    if getattr(evaluate.ParallelExecutor, "one_copy", False):
        return

    class OneCopy(evaluate.ParallelExecutor):
        one_copy = True

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("timeout", 0)  # 0: DSPy never re-sends a call
            super().__init__(*args, **kwargs)

    evaluate.ParallelExecutor = OneCopy


@contextlib.contextmanager
def models(args):
    """(task LM, prompt LM, description) for this run; starts and stops the local server if needed."""
    no_straggler_copies()
    if args.fake:
        from benchmarks.smoke import fake_lms

        yield (*fake_lms(), {"task_model": "fake", "prompt_model": "fake"})
        return
    if args.task_model:
        task = dspy.LM(args.task_model, temperature=0.0, max_tokens=args.max_tokens)
        prompt = dspy.LM(args.prompt_model or args.task_model, temperature=0.7, max_tokens=args.prompt_max_tokens)
        yield task, prompt, {"task_model": task.model, "prompt_model": prompt.model}
        return
    from dspy_fgo.local import MODELS, ensure_model, local_lm, serve

    path = ensure_model(args.local_model)
    with serve(args.local_model, n_ctx=8192, n_parallel=2, n_threads=2) as server:
        task = local_lm(server, temperature=0.0, max_tokens=args.max_tokens)
        prompt = local_lm(server, temperature=0.7, max_tokens=args.prompt_max_tokens, role="optimizer")
        yield task, prompt, {"task_model": task.model, "prompt_model": prompt.model,
                             "model_file": path.name, "model_sha256": MODELS[args.local_model].sha256,
                             "server": "xllamacpp, 2 threads, 2 slots x 8192 tokens"}


def code_version(root: Path | None = None) -> str | None:
    """The git commit the run used, marked "+dirty" if tracked files were edited; None outside git."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        # Results written by a run in flight (cells, checkpoints) and docs edited meanwhile are not
        # code: they do not make it dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!benchmarks/results", ":!*.md"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def run_cell(task, method: str, seed: int, task_lm, prompt_lm, num_threads: int, checkpoint_dir=None,
             epochs: int | None = None, on_progress: Callable[[dict], None] = lambda spent: None,
             max_demos: int | None = None) -> dict:
    """Compile with one method and seed, then score on the test split. While it compiles,
    ``on_progress`` gets the wall time and usage so far every ``attempts.HEARTBEAT_S`` seconds."""
    task_lm = task_lm.copy(stop=list(task.stop)) if task.stop else task_lm
    # Seeds must change the optimizer's sampled proposals even with the disk cache on.
    seeded_prompt = prompt_lm.copy(rollout_id=seed) if prompt_lm.kwargs.get("temperature") else prompt_lm
    setup = Setup(metric=task.metric, task_lm=task_lm, prompt_lm=seeded_prompt, seed=seed,
                  num_threads=num_threads, partition_key=task.partition_key, checkpoint_dir=checkpoint_dir,
                  epochs=epochs, max_demos=max_demos)
    meter = RoleMeter("compile")
    start = time.perf_counter()
    # When both roles use one model name, calls cannot be split by role: report them as task usage.
    split = seeded_prompt.model != task_lm.model

    def spent() -> dict:
        by_model = {m: u.to_dict() for m, u in meter.by_model.items()}
        return {"compile_wall_s": round(time.perf_counter() - start, 1), "usage_by_model": by_model,
                "optimizer_usage": by_model.get(seeded_prompt.model, {}) if split else {},
                "task_usage": by_model.get(task_lm.model, {})}

    def counted_by(tally: RoleMeter):
        return dspy.context(lm=task_lm, usage_tracker=tally, callbacks=[*dspy.settings.callbacks, tally])

    with counted_by(meter), Heartbeat(lambda: on_progress(spent())):
        program, extra = METHODS[method](task.make_program(), task.train, task.val, setup)
    compiled = spent()
    tester = RoleMeter("test")  # what the returned program costs per question: its prompt is paid on every call
    with counted_by(tester):
        evaluation = dspy.Evaluate(devset=task.test, metric=task.metric, num_threads=num_threads,
                                   display_progress=False, max_errors=len(task.test))(program)
    per_group: dict[str, list[float]] = {}
    for example, _, score in evaluation.results:
        per_group.setdefault(task.group_of(example), []).append(float(score))
    return {
        "task": task.name, "method": method, "seed": seed,
        "test_accuracy": evaluation.score / 100.0, "n_test": len(task.test),
        "per_group_accuracy": {g: sum(v) / len(v) for g, v in sorted(per_group.items())},
        **compiled,
        "test_usage": tester.usage.to_dict(),
        "instructions": read_candidate(program, tools=True),  # an agent's tool descriptions too
        **({"epochs": epochs} if epochs is not None else {}),
        **({"max_demos": max_demos} if max_demos is not None else {}),
        **({"task_stop": list(task.stop)} if task.stop else {}),
        **extra,
    }


def read_owner(unit_dir: Path) -> str | None:
    """The cell that made the checkpoint units in ``unit_dir``, if another cell finished there first."""
    marker = unit_dir / "OWNER"
    return marker.read_text().strip() if marker.exists() else None


def add_shared_cost(cell: dict, owner_path: Path) -> None:
    """A cell that reused another cell's partitions and merges also pays for them: its compile time,
    calls and tokens become its own plus the owner's (both kept apart in the cell)."""
    owner = json.loads(owner_path.read_text())
    cell["shared_units_with"] = {"cell": owner_path.stem, "code_version": owner.get("code_version"),
                                 "compile_wall_s": owner["compile_wall_s"]}
    cell["own_compile_wall_s"] = cell["compile_wall_s"]
    cell["compile_wall_s"] = round(cell["compile_wall_s"] + owner["compile_wall_s"], 1)
    for key in ("optimizer_usage", "task_usage"):
        cell["own_" + key] = cell.get(key) or {}
        cell[key] = combine_usage(cell["own_" + key], owner.get(key) or {})
    if partial(owner) and not cell.get("resumed"):
        # The owner's figures are partial (cache replays), and so are the ones this cell took from it.
        cell["resumed"] = True
        cell["replayed"] = f"its partitions and merges are {owner_path.stem}'s, which was resumed"


def seed_partitions(unit_dir: Path, source: Path) -> None:
    """Copy another run's finished partitions (its manifest, epochs and partitions: not its merge
    nodes) into an empty checkpoint directory, so that FGO resumes after its partition stage."""
    if (unit_dir / "manifest.json").exists():
        return  # already started: its own checkpoint wins
    if not (source / "manifest.json").exists():
        sys.exit(f"--partitions-from: no checkpoint at {source}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.json")):
        if path.name == "manifest.json" or path.name.startswith(("epoch-", "partition-")):
            (unit_dir / path.name).write_bytes(path.read_bytes())


def record_partitions_from(cell: dict, source_cell: Path) -> None:
    """What a cell that started from another run's partitions did not pay for itself: that run's
    partition stage (its time, usage and code), kept beside the cell's own figures."""
    source = json.loads(source_cell.read_text())
    report = source.get("report") or {}
    cell["partitions_from"] = {"cell": str(source_cell), "code_version": source.get("code_version"),
                               "optimize_stage_s": (report.get("timings") or {}).get("optimize"),
                               "optimize_stage_usage": (report.get("stage_usage") or {}).get("optimize")}
    cell["resumed"] = True  # its compile time and tokens leave out the partition stage
    cell["replayed"] = f"its partitions are {source_cell.stem}'s ({source.get('code_version')})"


# What makes one directory's cells comparable: a run that changes any of these needs its own --out.
# Epochs and demos are a method's settings: each cell records its own.
COMPARABLE = ("program", "max_tokens", "n_train", "n_val", "n_test", "task_model", "prompt_model", "model_file",
              "model_sha256")
RUN_KEYS = ("command", "code_version", "epochs", "max_demos")  # what each run records of itself


def refuse_incomparable(path: Path, settings: dict) -> dict:
    """The directory's ``config.json`` (empty if new); exits when one of ``settings`` differs from
    it, since that run's cells could not be compared with the ones there."""
    earlier = json.loads(path.read_text()) if path.exists() else {}
    changed = [f"{key}: {earlier[key]!r} there, {value!r} now" for key, value in settings.items()
               if key in COMPARABLE and key in earlier and earlier[key] != value]
    if changed:
        sys.exit(f"{path.parent} holds cells made with other settings ({'; '.join(changed)}): "
                 "choose another --out")
    return earlier


def record_run(path: Path, config: dict) -> None:
    """Write ``config.json``: the directory's settings and every run that added cells to it, so that
    a later run (another seed, another method) adds itself instead of replacing an earlier run's
    record. A run whose settings would make its cells incomparable with the ones there is refused."""
    earlier = refuse_incomparable(path, {key: config.get(key) for key in COMPARABLE})
    runs = earlier.get("runs") or ([{k: earlier.get(k) for k in RUN_KEYS}] if "command" in earlier else [])
    this_run = {k: config.get(k) for k in RUN_KEYS}
    path.write_text(json.dumps({**config, "runs": runs + ([] if this_run in runs else [this_run])}, indent=2))


def main(argv=None) -> int:
    import logging

    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("dspy_fgo").setLevel(logging.INFO)  # progress: partitions and merges as they finish
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [TASKS[name](program=args.program, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                         source=args.data) for name in args.tasks.split(",")]
    # Seed-major, so every method has seed 0 before any has seed 1: a run cut short stays comparable.
    cells = [(t, m, s) for t in tasks for s in seeds for m in methods if m != "unoptimized" or s == seeds[0]]
    settings = {"program": args.program, "max_tokens": args.max_tokens,
                "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test}
    refuse_incomparable(out / "config.json", settings)  # before a model server starts for nothing
    with models(args) as (task_lm, prompt_lm, model_info):
        config = {"command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
                  **settings, "epochs": args.epochs, "max_demos": args.max_demos,
                  "code_version": code_version(), **model_info}
        record_run(out / "config.json", config)
        for i, (task, method, seed) in enumerate(cells, 1):
            path = out / "cells" / f"{task.name}-{args.program}-{method}-seed{seed}.json"
            if path.exists():
                print(f"[{i}/{len(cells)}] {path.name}: done before, skipped", flush=True)
                continue
            print(f"[{i}/{len(cells)}] {task.name} {method} seed {seed}: compiling...", flush=True)
            # FGO's finished partitions survive a kill; fgo-route reuses fgo-nearest's (same units, decided after).
            unit_dir = out / "checkpoints" / path.stem.replace(f"-{method}-", f"-{SHARES_UNITS_WITH.get(method, method)}-")
            source = None
            if args.partitions_from and method.startswith("fgo"):
                directory, _, made_by = args.partitions_from.partition(":")
                made_by = made_by or "fgo"
                source = Path(directory) / "cells" / f"{task.name}-{args.program}-{made_by}-seed{seed}.json"
                units = source.stem.replace(f"-{made_by}-", f"-{SHARES_UNITS_WITH.get(made_by, made_by)}-")
                seed_partitions(unit_dir, Path(directory) / "checkpoints" / units)
            owner = read_owner(unit_dir)
            checkpoint = str(unit_dir)
            # A marker left by a killed attempt: this cell resumes, and adds that attempt's figures to its own.
            marker = Marker(path.with_suffix(".started"), config["code_version"])
            cell = run_cell(task, method, seed, task_lm, prompt_lm, args.num_threads, checkpoint, args.epochs,
                            on_progress=marker.record, max_demos=args.max_demos)
            cell["resumed"] = marker.resumed  # before add_shared_cost: an owner's resumption carries over
            marker.add_earlier(cell)
            if source is not None:
                record_partitions_from(cell, source)
            if owner and owner != path.stem:
                add_shared_cost(cell, out / "cells" / f"{owner}.json")
            elif not owner and unit_dir.exists():  # this cell made checkpoint units: others may share them
                (unit_dir / "OWNER").write_text(path.stem)
            # Cells of one directory may come from different runs, and different code.
            cell["command"], cell["code_version"] = config["command"], config["code_version"]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cell, indent=2, default=str))
            tmp.replace(path)  # atomic: a killed run never leaves a half-written cell
            marker.done()
            print(f"[{i}/{len(cells)}] {task.name} {method} seed {seed}: test accuracy "
                  f"{cell['test_accuracy']:.3f}, compile {cell['compile_wall_s']:.0f}s, optimizer prompt tokens "
                  f"{cell['optimizer_usage'].get('prompt_tokens', 0)}", flush=True)
    write_summary(out, config)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

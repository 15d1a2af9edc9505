"""The ``dspy-fgo`` command: a demo on the embedded local model, the benchmark, report rendering."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else importing litellm stalls offline


def demo(args) -> int:
    """FGO against MIPROv2 (with demos) on a few BIG-bench tasks, on the embedded local model."""
    import dspy

    from dspy_fgo import FGO
    from dspy_fgo.baselines import knn_fewshot
    from dspy_fgo.run.accounting import RoleMeter
    from dspy_fgo.data import bbh_metric, bbh_program, load_bbh, split_bbh
    from dspy_fgo.local import local_lm, serve

    if not args.verbose:
        _quiet()
    tasks = args.tasks.split(",")
    train, val, test = split_bbh(load_bbh(tasks=tasks), args.n_train, args.n_val, args.n_test)
    print(f"What this is: one dspy.Predict program for {len(tasks)} BIG-bench tasks ({', '.join(tasks)}), optimized "
          f"by FGO (its defaults, partitioned by task), by DSPy's KNNFewShot (4 nearest labeled demos per input) and "
          f"by MIPROv2 (instructions and up to 4 demos, 3 trials), on {args.model} served on "
          f"127.0.0.1; {len(train)} train, {len(val)} validation and {len(test)} test questions.\n"
          "What it is not: a benchmark. One seed, small budgets, and 60 questions leave a few points of noise "
          "either way; benchmarks/README.md has the three-seed results.\n", flush=True)
    with serve(args.model) as server:
        task_lm = local_lm(server, temperature=0.0, max_tokens=256)
        prompt_lm = local_lm(server, temperature=0.7, max_tokens=512, role="optimizer")
        methods = {
            "unoptimized": lambda p: p,
            "FGO": lambda p: FGO(metric=bbh_metric, partition_by="task", prompt_model=prompt_lm, epochs=args.epochs,
                                 proposals=2, num_threads=2, progress=True).compile(p, trainset=train, valset=val),
            "KNNFewShot": lambda p: knn_fewshot(p, train, k=4),
            "MIPROv2": lambda p: dspy.MIPROv2(metric=bbh_metric, prompt_model=prompt_lm, auto=None, num_candidates=3,
                                              max_bootstrapped_demos=2, max_labeled_demos=2, num_threads=2,
                                              verbose=False).compile(p, trainset=train, valset=val, num_trials=3,
                                                                     minibatch=False),
        }
        rows = []
        for name, optimize in methods.items():
            meter = RoleMeter(name)
            start = time.perf_counter()
            with dspy.context(lm=task_lm, usage_tracker=meter, callbacks=[*dspy.settings.callbacks, meter]):
                with _calls_bar(f"{name}: optimizing", meter, enabled=name == "MIPROv2"), _silent(args.verbose):
                    program = optimize(bbh_program())
            wall = time.perf_counter() - start
            tested = RoleMeter("test")
            with dspy.context(lm=task_lm, usage_tracker=tested, callbacks=[*dspy.settings.callbacks, tested]):
                with _calls_bar(f"{name}: testing", tested, enabled=True, total=len(test)):
                    score = dspy.Evaluate(devset=test, metric=bbh_metric, num_threads=2,
                                          display_progress=False)(program).score
            opt = meter.by_model.get(prompt_lm.model)
            rows.append((name, score, wall, opt.calls if opt else 0, opt.prompt_tokens if opt else 0))
            print(f"{name}: test accuracy {score:.1f} %, compile {wall:.0f} s", flush=True)
    print("\n| method | test accuracy | compile s | optimizer calls | optimizer prompt tokens |\n|---|---|---|---|---|")
    for name, score, wall, calls, tokens in rows:
        print(f"| {name} | {score:.1f} % | {wall:.0f} | {calls} | {tokens} |")
    print(f"\n({len(test)} test questions, one seed: a difference of a few points is noise; see benchmarks/ for "
          "three seeds)")
    return 0


def _quiet() -> None:
    """DSPy's, MIPROv2's, Optuna's and LiteLLM's log lines and progress bars off: the demo prints its own
    bars and a table."""
    import logging

    import tqdm

    # DSPy's bootstrapping and evaluation bars call ``tqdm.tqdm``. Setting TQDM_DISABLE here is too late:
    # tqdm reads its environment once, at import. The demo's own bars use ``tqdm.auto`` and stay.
    class Silent(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    tqdm.tqdm = Silent
    for name in ("dspy", "optuna", "LiteLLM", "litellm", "httpx", "dspy_fgo"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    except ImportError:
        pass


def _silent(verbose: bool):
    """Standard output off for the block (MIPROv2 prints "Bootstrapping set i/n" with print), unless verbose."""
    import contextlib

    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(open(os.devnull, "w"))


class _calls_bar:
    """A progress bar counting a meter's LM calls while a block runs (for work without bars of its own)."""

    def __init__(self, label: str, meter, enabled: bool, total: int | None = None):
        self.label, self.meter, self.enabled, self.total = label, meter, enabled, total

    def __enter__(self):
        if self.enabled:
            import threading

            from tqdm.auto import tqdm

            self.bar = tqdm(desc=self.label, total=self.total, unit=" LM calls", dynamic_ncols=True, disable=False)
            self.stop = threading.Event()

            def follow():
                while not self.stop.wait(1.0):
                    self.bar.n = self.meter.usage.calls
                    self.bar.refresh()

            self.thread = threading.Thread(target=follow, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.bar.n = self.meter.usage.calls
            self.bar.close()


def report(args) -> int:
    """Render a saved report (``Report.save``) to Markdown and PNG."""
    from dspy_fgo.report.report import Report

    saved = Report.load(args.path)
    out = Path(args.out or Path(args.path).with_suffix(""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(f"# {saved.method} report\n\n```\n{saved.summary()}\n```\n")
    made = ["summary.md"]
    try:
        from dspy_fgo.report.plots import plot_partitions, plot_tree

        if saved.tree:
            made.append(plot_tree(saved, out / "tree.png").name)
        if saved.partitions:
            made.append(plot_partitions(saved, out / "partitions.png").name)
    except ImportError as exc:
        print(f"(no plots: {exc})", file=sys.stderr)
    print(saved.summary())
    print(f"\nwrote {', '.join(str(out / m) for m in made)}")
    return 0


def bench(args, rest) -> int:
    """The benchmark runner; it lives in the repository's benchmarks/ package."""
    try:
        from benchmarks.run import main
    except ImportError:
        print("dspy-fgo bench runs benchmarks/ from a clone of the repository: cd into it first", file=sys.stderr)
        return 2
    return main(rest)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dspy-fgo", description="FGO (Fine-Grained Generative Optimization) for DSPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="FGO vs MIPROv2 on a few BIG-bench tasks, on the embedded local model",
                       description="Optimize one dspy.Predict program for a few BIG-bench tasks with FGO (partitioned "
                                   "by task) and with MIPROv2 (instructions and demos, small budget), on a model "
                                   "served locally on 127.0.0.1 (no API key), and print test accuracy, compile time "
                                   "and optimizer calls and tokens for each. A demo, not a benchmark: see "
                                   "benchmarks/ for that.")
    d.add_argument("--model", default="qwen2.5-coder-0.5b",
                   help="embedded model: qwen2.5-coder-0.5b (dspy-fgo[local-small], the default: twice as fast, so "
                        "the demo fits 15 minutes on 2 cores) or qwen2.5-coder-1.5b ([local])")
    d.add_argument("--tasks", default="navigate,object_counting,sports_understanding,date_understanding",
                   help="comma-separated BIG-bench tasks from the vendored sample (dspy_fgo.data.TASKS)")
    d.add_argument("--n-train", type=int, default=3, help="training examples per task")
    d.add_argument("--n-val", type=int, default=3, help="validation examples per task (held-out checks, final choice)")
    d.add_argument("--n-test", type=int, default=15, help="held-out test examples per task")
    d.add_argument("--epochs", type=int, default=1, help="FGO's rounds of critique and rewrite per partition")
    d.add_argument("--verbose", action="store_true", help="keep DSPy's, MIPROv2's and FGO's log lines")
    r = sub.add_parser("report", help="render a saved report JSON to Markdown and PNG")
    r.add_argument("path")
    r.add_argument("--out", default=None, help="output folder (default: next to the report)")
    sub.add_parser("bench", help="the benchmark runner (python -m benchmarks.run); pass its flags after 'bench'",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"demo": demo, "report": report}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())

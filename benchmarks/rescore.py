"""Rescore finished cells on a larger test split, and say which differences the noise can explain.

    python -m benchmarks.rescore --out benchmarks/results/bbh15-predict-v3 --n-test 32

A cell's accuracy on 150 questions moves by about 4 points from the questions alone, the size of
the gaps the benchmark has to judge. Compiling is the expensive part, and every cell keeps the
program it compiled (``instructions``: its instructions and demos), so this rebuilds each program
without an LM call and evaluates it on a test split of ``--n-test`` examples per group, taken
after the same train and val examples (the cell's own test questions are its first ones). Nothing
is compiled again: the programs are exactly the ones in the cells. A program with routed demos
(``route="demos"``, with or without ``nearest_demos``, or ``route=True`` with an expert per
partition) has its router fitted again from the trainset, as FGO fitted it; a program that cannot be rebuilt from its cell (an older
``route=True`` cell, whose experts were only the routed partitions') is skipped and listed.

Each rescored cell is written to ``OUT/rescore-n<N>/`` with its score on every question, so a run
resumes, and its summary keeps every cell rescored there (a run for some `--methods` leaves the others in). A question whose call errors (the local server refused a connection) is asked again, up to
three times; a cell with a question that errors every time is not written (the summary lists it and
the exit status is 1), because an error scored as a wrong answer would lower the cell for a fault of
the machine. The summary compares every method with ``--reference`` (default MIPROv2 with demos): the
difference of their mean accuracies with a 95% interval from a bootstrap that resamples both the
seeds of each method and the test questions, so that the interval carries the optimizer's spread
between seeds as well as the questions'. A difference whose interval holds 0 is a tie.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from benchmarks import run
from benchmarks.methods import METHODS, Setup
from benchmarks.report import load_cells
from benchmarks.tasks import TASKS
from dspy_fgo.candidate import DEMOS, apply_candidate

# Programs whose cell holds all they are: the candidate (instructions and demos) is the program.
# KNNFewShot picks demos per input at inference; compiling it again costs no LM call.
RECOMPILE_FREE = {"knn-fewshot"}
BOOTSTRAP_DRAWS = 2000
ATTEMPTS, RETRY_PAUSE = 3, 10  # a question whose call errors is asked again, up to 3 times, 10 s apart


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.rescore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="a benchmark directory (its cells/ and config.json)")
    p.add_argument("--n-test", type=int, required=True, help="test examples per group")
    p.add_argument("--methods", default=None, help="comma-separated (default: every method with cells)")
    p.add_argument("--seeds", default=None,
                   help="comma-separated: rescore only these seeds' cells now (each may then run in its own "
                        "DSPy cache, whose answers to the cell's own questions are its record's); cells rescored "
                        "before still join the summary")
    p.add_argument("--reference", default="mipro-demos", help="the method every other one is compared with")
    p.add_argument("--data", default=None, help="BBH JSONL directory (default: the vendored sample)")
    p.add_argument("--num-threads", type=int, default=4)
    p.add_argument("--nodes", default=None,
                   help="comma-separated merge-tree node ids: also rescore those nodes of every FGO cell "
                        "(as method 'fgo@node<id>'), to see what the final selection left behind")
    p.add_argument("--compare-with", default=None, metavar="DIR",
                   help="another benchmark directory whose cells were rescored on the same questions "
                        "(DIR/rescore-n<N>): its methods join the summary, for cells kept in another run "
                        "(MIPROv2's cells, whose code path did not change)")
    p.add_argument("--fake", action="store_true", help="CI smoke: a scripted fake LM (its numbers mean nothing)")
    return p.parse_args(argv)


def rebuild(cell: dict, task, setup: Setup):
    """The program a cell compiled, or None when its cell does not hold it."""
    student = task.make_program()
    if cell["method"] in RECOMPILE_FREE:
        return METHODS[cell["method"]](student, task.train, task.val, setup)[0]
    names = {name for name, _ in student.named_predictors()}
    saved = {key.removesuffix(DEMOS) for key in cell["instructions"]}
    if saved <= names:
        return apply_candidate(student, cell["instructions"])
    return rebuild_routed_demos(cell, task)


def rebuild_routed_demos(cell: dict, task):
    """A program with routed demos: its experts (one per partition, then the fallback) are in the
    cell, and its router is fitted again as FGO fitted it (the offline TF-IDF on the trainset's
    inputs, a centroid per partition: the merge tree's leaves), so it is the same program. None
    for any other routed program."""
    from dspy_fgo.route.nearest import NearestDemos
    from dspy_fgo.route import RoutePlan, Routed

    settings = (cell.get("report") or {}).get("settings", {})
    if settings.get("route") not in ("demos", True) or settings.get("embedder"):
        return None
    leaves = [node for node in cell["report"].get("tree", []) if not node["children"]]
    names = {key.split(".")[0].removesuffix(DEMOS) for key in cell["instructions"]}
    if names != {f"experts[{i}]" for i in range(len(leaves) + 1)}:
        return None  # not an expert per partition: a route=True cell from before demos were routed
    experts = []
    for i in range(len(leaves) + 1):  # a partition's demos each, then the fallback's
        prefix, candidate = f"experts[{i}]", {}
        for key, value in cell["instructions"].items():
            base, suffix = (key.removesuffix(DEMOS), DEMOS) if key.endswith(DEMOS) else (key, "")
            if base == prefix or base.startswith(prefix + "."):
                candidate[(base[len(prefix) + 1:] or "self") + suffix] = value
        experts.append(apply_candidate(task.make_program(), candidate))
    plan = RoutePlan(None, None, task.train, None, None)  # the router only: nothing is run or counted
    nearest = None
    if settings.get("nearest_demos"):  # each expert's demos are a pool, cut per input as FGO cut them
        nearest = NearestDemos.fit(task.train, task.val, settings["max_demos"], settings.get("balance_demos", True))
    return Routed(experts, plan.fit_router([leaf["examples"] for leaf in leaves], len(leaves)), nearest)


def node_cells(cells: list[dict], node_ids: list[int]) -> list[dict]:
    """For each cell with a merge tree, one cell per requested node holding that node's candidate.

    The node's test accuracy was never measured, so ``test_accuracy`` is None."""
    made = []
    for cell in cells:
        tree = {node["id"]: node for node in (cell.get("report") or {}).get("tree", [])}
        for node_id in node_ids:
            if node_id not in tree:
                sys.exit(f"{cell['method']} seed {cell['seed']} has no merge-tree node {node_id}")
            made.append({**cell, "method": f"{cell['method']}@node{node_id}", "test_accuracy": None,
                         "instructions": tree[node_id]["candidate"]})
    return made


def question_key(example) -> str:
    """A test question's name across runs: BBH's task and id; a task whose examples carry neither
    (UBL invoices) is named by a digest of its inputs."""
    name = example.get("id", example.get("question"))
    if name is None:
        inputs = json.dumps(example.inputs().toDict(), sort_keys=True, default=str)
        name = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    return f"{example.get('task', '')}/{name}"


def first_per_group(examples, group_of, k: int) -> list:
    """The first ``k`` examples of each group, in order: a cell's own test questions within a larger split."""
    seen: dict[str, int] = {}
    firsts = []
    for ex in examples:
        group = group_of(ex)
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= k:
            firsts.append(ex)
    return firsts


class Unscored(Exception):
    """Some questions' calls errored on every attempt: the cell is not rescored rather than scored wrong."""

    def __init__(self, questions: list[str]):
        super().__init__(f"{len(questions)} questions errored on all {ATTEMPTS} attempts: {', '.join(questions[:5])}")


def score_every_question(program, task, setup: Setup) -> dict[str, float]:
    """The program's score on each test question. A question whose call raised (a refused connection,
    a server restarting) is asked again, up to ``ATTEMPTS`` times in all, because an error is not a
    wrong answer: scoring it 0 would lower the cell by a fault of the machine, not of its program."""
    import dspy

    scores, left = {}, list(task.test)
    if len({question_key(ex) for ex in left}) < len(left):
        raise ValueError("two test questions share a name (question_key): their scores would overwrite each other")
    for attempt in range(ATTEMPTS):
        if attempt:
            print(f"{len(left)} questions errored: asking them again in {RETRY_PAUSE} s", flush=True)
            time.sleep(RETRY_PAUSE)
        with dspy.context(lm=setup.task_lm):
            evaluation = dspy.Evaluate(devset=left, metric=task.metric, num_threads=setup.num_threads,
                                       display_progress=False, max_errors=len(left) + 1,
                                       failure_score=math.nan)(program)
        scores.update({question_key(ex): float(score) for ex, _, score in evaluation.results
                       if not math.isnan(score)})
        left = [ex for ex in left if question_key(ex) not in scores]
        if not left:
            return scores
    raise Unscored([question_key(ex) for ex in left])


def rescore_cell(cell: dict, task, setup: Setup) -> dict | None:
    program = rebuild(cell, task, setup)
    if program is None:
        return None
    scores = score_every_question(program, task, setup)
    # The cell's own test questions come first in each group: scoring them again must give its accuracy.
    groups = len({task.group_of(ex) for ex in task.test})
    first = [question_key(ex) for ex in first_per_group(task.test, task.group_of, cell["n_test"] // groups)]
    return {"method": cell["method"], "seed": cell["seed"], "cell_code_version": cell.get("code_version"),
            "cell_test_accuracy": cell["test_accuracy"], "cell_n_test": cell["n_test"],
            "same_questions_accuracy": round(statistics.mean(scores[k] for k in first), 4) if first else None,
            "n_test": len(scores), "test_accuracy": round(statistics.mean(scores.values()), 4), "scores": scores}


def bootstrap_difference(a: list[dict], b: list[dict], draws: int = BOOTSTRAP_DRAWS, seed: int = 0):
    """(difference of mean accuracy a - b, 2.5th and 97.5th percentiles), both in points.

    ``a`` and ``b`` are per-seed score dicts over the same questions. Each draw resamples the seeds of
    each method and the questions, all with replacement."""
    questions = sorted(set(a[0]))
    rng = random.Random(seed)

    def mean(runs, qs):
        return sum(r[q] for r in runs for q in qs) / (len(runs) * len(qs))

    diffs = []
    for _ in range(draws):
        qs = rng.choices(questions, k=len(questions))
        diffs.append(mean(rng.choices(a, k=len(a)), qs) - mean(rng.choices(b, k=len(b)), qs))
    diffs.sort()
    low, high = diffs[int(0.025 * draws)], diffs[int(0.975 * draws) - 1]
    return 100 * (mean(a, questions) - mean(b, questions)), 100 * low, 100 * high


def summary(rescored: list[dict], reference: str) -> list[dict]:
    by_method: dict[str, list[dict]] = {}
    for r in sorted(rescored, key=lambda r: (r["method"], r["seed"])):
        by_method.setdefault(r["method"], []).append(r)
    ref = [r["scores"] for r in by_method.get(reference, [])]
    rows = []
    for method, runs in by_method.items():
        accs = [100 * r["test_accuracy"] for r in runs]
        row = {"method": method, "seeds": [r["seed"] for r in runs], "accuracy": accs,
               "mean": statistics.mean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "n_test": runs[0]["n_test"]}
        if ref and method != reference:
            diff, low, high = bootstrap_difference([r["scores"] for r in runs], ref)
            row.update(diff=diff, low=low, high=high,
                       verdict="tie" if low <= 0 <= high else ("ahead" if low > 0 else "behind"))
        rows.append(row)
    return rows


def table(rows: list[dict], reference: str) -> str:
    lines = [f"| method | seeds | test acc per seed | mean ± sd | vs {reference}: difference [95% interval] | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = " / ".join(f"{a:.1f}" for a in r["accuracy"])
        versus = f"{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]" if "diff" in r else "–"
        lines.append(f"| {r['method']} | {len(r['seeds'])} | {per_seed} | {r['mean']:.1f} ± {r['sd']:.1f} "
                     f"(n={r['n_test']}) | {versus} | {r.get('verdict', '–')} |")
    return "\n".join(lines)


def _percent(accuracy: float | None) -> str:
    return "not measured" if accuracy is None else f"{100 * accuracy:.1f} %"


def rescored_elsewhere(other: Path, n_test: int, mine: list[dict]) -> list[dict]:
    """The rescored cells of another directory, for methods not rescored here, on the same questions."""
    source = other / f"rescore-n{n_test}"
    if not source.is_dir():
        sys.exit(f"--compare-with: {source} does not exist (rescore that run with --n-test {n_test} first)")
    own = {r["method"] for r in mine}
    questions = set(mine[0]["scores"]) if mine else None
    found = []
    for path in sorted(source.glob("*-seed*.json")):
        result = json.loads(path.read_text())
        if result["method"] in own:
            continue
        if questions is not None and set(result["scores"]) != questions:
            sys.exit(f"--compare-with: {path} was scored on other questions than this run's")
        found.append({**result, "from": str(source)})
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    config = json.loads((out / "config.json").read_text())
    cells = load_cells(out)
    if args.methods:
        wanted = {m.strip() for m in args.methods.split(",")}
        cells = [c for c in cells if c["method"] in wanted]
    if args.nodes:
        cells += node_cells([c for c in cells if (c.get("report") or {}).get("tree")],
                            [int(n) for n in args.nodes.split(",")])
    if not cells:
        sys.exit(f"no cells to rescore in {out / 'cells'}")
    task_name = cells[0]["task"]
    sizes = dict(n_train=config["n_train"], n_val=config["n_val"])
    task = TASKS[task_name](program=config["program"], n_test=args.n_test, source=args.data, **sizes)
    dest = out / f"rescore-n{args.n_test}"
    dest.mkdir(exist_ok=True)
    model_args = run.parse_args(["--program", config["program"], "--max-tokens", str(config["max_tokens"]),
                                 *(["--fake"] if args.fake else [])])
    seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    skipped, unscored, rescored, pending, later = [], [], [], [], []
    read = set()  # the rescored files already in ``rescored``
    for cell in cells:
        path = dest / f"{cell['task']}-{config['program']}-{cell['method']}-seed{cell['seed']}.json"
        if path.exists():  # rescored by an earlier run: no model is started for it
            rescored.append(json.loads(path.read_text()))
            read.add(path)
        elif seeds is not None and cell["seed"] not in seeds:
            later.append(path.stem)
        else:
            pending.append((cell, path))
    version = run.code_version()  # the code this process loaded: a commit made while it runs is not it
    with (run.models(model_args) if pending else nullcontext((None, None, None))) as (task_lm, prompt_lm, _):
        task_lm = task_lm.copy(stop=list(task.stop)) if task_lm and task.stop else task_lm
        for cell, path in pending:
            setup = Setup(metric=task.metric, task_lm=task_lm, prompt_lm=prompt_lm, seed=cell["seed"],
                          num_threads=args.num_threads, max_demos=cell.get("max_demos"))
            try:
                result = rescore_cell(cell, task, setup)
            except Unscored as error:  # nothing written: a later run asks this cell again
                unscored.append(path.stem)
                print(f"{path.stem}: not rescored, {error}", flush=True)
                continue
            if result is None:
                skipped.append(path.stem)
                print(f"{path.stem}: its program cannot be rebuilt from the cell, skipped", flush=True)
                continue
            result["code_version"] = version
            path.write_text(json.dumps(result, indent=2))
            rescored.append(result)
            read.add(path)
            print(f"{path.stem}: {100 * result['test_accuracy']:.1f} % on {result['n_test']} questions "
                  f"(its own {cell['n_test']}: {100 * (result['same_questions_accuracy'] or 0):.1f} %, "
                  f"cell said {_percent(cell['test_accuracy'])})", flush=True)
    # Cells of other methods rescored here before (a run with --methods) stay in the summary.
    for path in sorted(set(dest.glob(f"*-{config['program']}-*-seed*.json")) - read):
        rescored.append(json.loads(path.read_text()))
    if args.compare_with:
        rescored += rescored_elsewhere(Path(args.compare_with), args.n_test, rescored)
    rows = summary(rescored, args.reference)
    md = [f"Command: `python -m benchmarks.rescore {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
          table(rows, args.reference), ""]
    if args.compare_with:
        md += [f"Methods not rescored here are {args.compare_with}'s rescored cells, on the same questions.", ""]
    md += [f"Not rescored (program not in its cell): {', '.join(skipped)}", ""] if skipped else []
    md += [f"Not rescored yet (other seeds): {', '.join(later)}", ""] if later else []
    md += [f"Not rescored (calls errored on every attempt; run again to resume): {', '.join(unscored)}", ""] \
        if unscored else []
    (dest / "summary.json").write_text(json.dumps({"reference": args.reference, "rows": rows,
                                                   "skipped": skipped, "unscored": unscored}, indent=2))
    (dest / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 1 if unscored else 0


if __name__ == "__main__":
    raise SystemExit(main())

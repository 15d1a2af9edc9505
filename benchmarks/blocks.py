"""Accuracy per block of questions: the cells' own, the next ones, and fresh ones no change was read from.

    python -m benchmarks.blocks --dirs benchmarks/results/bbh15-predict-v12/rescore-n30,benchmarks/results/bbh15-predict-v3/rescore-n30 \\
        --size 10 --out benchmarks/results/bbh15-predict-v12/blocks-n30.md

A rescore (``benchmarks.rescore``) scores each cell on every group's first ``n`` test questions, the
cell's own first. Questions that a later change was read from (a README section that looked at
questions 11-20, say) favour that change there, so each block of ``--size`` questions per group
(1-10, 11-20, 21-30, ...) is reported apart, with each method against ``--reference`` on each block:
the difference of mean accuracy and a 95 % interval from the rescore's bootstrap (seeds of each
method and questions resampled). Only cells scored on the same questions are compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.rescore import bootstrap_difference


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dirs", required=True, help="comma-separated rescore directories (OUT/rescore-n<N>)")
    p.add_argument("--size", type=int, default=10, help="questions per group in a block")
    p.add_argument("--reference", default="mipro-demos")
    p.add_argument("--methods", default=None, help="comma-separated (default: all found)")
    p.add_argument("--out", default=None, help="also write the table here (and a .json beside it)")
    return p.parse_args(argv)


def block_of(scores: dict, size: int) -> dict[str, int]:
    """Each question's block: its position among its group's questions (the key's part before '/'), in
    the order the rescore scored them, divided by ``size``."""
    seen: dict[str, int] = {}
    blocks = {}
    for key in scores:
        group = key.split("/", 1)[0]
        blocks[key] = seen.get(group, 0) // size
        seen[group] = seen.get(group, 0) + 1
    return blocks


def load(dirs: list[str], methods: set[str] | None) -> dict[str, list[dict]]:
    by_method: dict[str, list[dict]] = {}
    questions = None
    for directory in dirs:
        paths = sorted(Path(directory).glob("*-seed*.json"))
        if not paths:
            raise SystemExit(f"no rescored cells in {directory}")
        for path in paths:
            cell = json.loads(path.read_text())
            if methods and cell["method"] not in methods:
                continue
            if questions is None:
                questions = list(cell["scores"])
            elif list(cell["scores"]) != questions:
                raise SystemExit(f"{path} was scored on other questions (or in another order) than the others")
            by_method.setdefault(cell["method"], []).append(cell)
    if not by_method:
        raise SystemExit("no cells of those methods")
    return {m: sorted(cells, key=lambda c: c["seed"]) for m, cells in by_method.items()}


def blocks_table(by_method: dict[str, list[dict]], size: int, reference: str) -> tuple[str, list[dict]]:
    first = next(iter(by_method.values()))[0]["scores"]
    block = block_of(first, size)
    keys_of = [[k for k in first if block[k] == b] for b in range(max(block.values()) + 1)]
    rows = []
    for method, cells in by_method.items():
        for b, keys in enumerate(keys_of):
            right = [sum(c["scores"][k] for k in keys) for c in cells]
            row = {"method": method, "block": f"{b * size + 1}-{(b + 1) * size}", "questions": len(keys),
                   "seeds": [c["seed"] for c in cells], "right": right,
                   "mean": 100 * statistics.mean(right) / len(keys)}
            if method != reference and reference in by_method:
                ref = [{k: c["scores"][k] for k in keys} for c in by_method[reference]]
                diff, low, high = bootstrap_difference([{k: c["scores"][k] for k in keys} for c in cells], ref)
                row.update(diff=round(diff, 1), low=round(low, 1), high=round(high, 1),
                           verdict="tie" if low <= 0 <= high else ("ahead" if low > 0 else "behind"))
            rows.append(row)
    lines = [f"| method | questions per group | seeds | right per seed (of the block) | mean | "
             f"vs {reference} [95% interval] | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        versus = f"{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]" if "diff" in r else "–"
        right = " / ".join(f"{x:g}" for x in r["right"])
        lines.append(f"| {r['method']} | {r['block']} | {','.join(map(str, r['seeds']))} | {right} of "
                     f"{r['questions']} | {r['mean']:.1f} % | {versus} | {r.get('verdict', '–')} |")
    return "\n".join(lines), rows


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = {m.strip() for m in args.methods.split(",")} if args.methods else None
    text, rows = blocks_table(load(args.dirs.split(","), methods), args.size, args.reference)
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Summaries of benchmark cells: results.json, a Markdown table (mean and spread over seeds), plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

REFERENCES = ("mipro-demos", "mipro-instructions")  # ratios are given against the first that ran


def load_cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _billed(usage: dict) -> int:
    """Calls not served by DSPy's cache (cells from before the split counted every call as billed)."""
    return usage.get("billed_calls", usage.get("calls", 0))


def partial(cell: dict) -> bool:
    """Whether a cell's time and tokens miss some of its compile: it resumed (or replayed another run's
    calls) without the earlier attempts' figures (``benchmarks.attempts``), or started from another
    run's partitions (``--partitions-from``)."""
    return (bool(cell.get("resumed")) and not cell.get("cost_over_attempts")) or bool(cell.get("partitions_from"))


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def aggregate(cells: list[dict]) -> list[dict]:
    """One row per (task, method): means over seeds. Tokens are billed tokens (see ``TOKEN_FOOTNOTE``)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["method"]), []).append(cell)
    rows = []
    for (task, method), group in groups.items():
        acc, acc_sd = _mean_sd([c["test_accuracy"] for c in group])
        opt = [c.get("optimizer_usage") or {} for c in group]
        rows.append({
            "task": task, "method": method, "seeds": sorted(c["seed"] for c in group),
            "test_accuracy": acc, "test_accuracy_sd": acc_sd, "n_test": group[0]["n_test"],
            "compile_wall_s": statistics.mean(c["compile_wall_s"] for c in group),
            "optimizer_calls": statistics.mean(u.get("calls", 0) for u in opt),
            "optimizer_billed_calls": statistics.mean(_billed(u) for u in opt),
            "optimizer_prompt_tokens": statistics.mean(u.get("prompt_tokens", 0) for u in opt),
            "optimizer_completion_tokens": statistics.mean(u.get("completion_tokens", 0) for u in opt),
            "resumed_seeds": sorted(c["seed"] for c in group if partial(c)),
            # Ratios compare only cells whose whole compile was measured.
            "fresh_prompt_tokens": _mean_or_none([u.get("prompt_tokens", 0)
                                                  for c, u in zip(group, opt) if not partial(c)]),
            "fresh_wall_s": _mean_or_none([c["compile_wall_s"] for c in group if not partial(c)]),
            "peak_optimizer_prompt_tokens": max(u.get("peak_prompt_tokens", 0) for u in opt),
            "task_calls": statistics.mean((c.get("task_usage") or {}).get("calls", 0) for c in group),
        })
    return sorted(rows, key=lambda r: (r["task"], r["method"]))


def _tokens(row: dict) -> str:
    resumed = f" (resumed: seed {', '.join(map(str, row['resumed_seeds']))}) ‡" if row["resumed_seeds"] else ""
    return f"{row['optimizer_prompt_tokens']:.0f}{resumed}"


TOKEN_FOOTNOTE = ("Optimizer calls and tokens: calls served by DSPy's disk cache are counted but not billed and "
                  "carry no tokens; the token figures are billed tokens. Within one run these are identical "
                  "requests made again (FGO critiquing an unchanged run in a later epoch).")
RESUMED_FOOTNOTE = ("‡ A cell resumed after an interruption, or one whose calls an earlier run had made (its "
                    "`replayed` field says which), replays them from DSPy's disk cache: their tokens, and the "
                    "earlier run's wall time, are missing from its figures. A cell that recorded its earlier "
                    "attempts' figures adds them instead (`cost_over_attempts`) and is not marked.")
PER_CALL_FOOTNOTE = ("² Prompt tokens per test call of the returned program (instruction, demos, question): "
                     "every later call pays them. Blank when some test calls were replayed from DSPy's cache, "
                     "or for cells recorded before this figure.")
RATIO_FOOTNOTE = ("¹ Ratios of means over the cells whose whole compile was measured: not resumed, or resumed "
                  "with the earlier attempts' time and tokens added (`cost_over_attempts`).")


def _ratio(row: dict, base: dict | None, key: str) -> str:
    if not base or row["method"] == "unoptimized" or not base[key] or row[key] is None:
        return ""
    return f"{row[key] / base[key]:.2f}x"


def table(rows: list[dict]) -> str:
    ran = {r["method"] for r in rows}
    reference = next((m for m in REFERENCES if m in ran), REFERENCES[0])
    lines = [
        "| task | method | seeds | test acc (mean ± sd) | compile wall s | optimizer calls (billed) "
        "| optimizer prompt tokens "
        f"| peak optimizer prompt | task-LM calls | tokens vs {reference} ¹ | time vs {reference} ¹ |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = {r["task"]: r for r in rows if r["method"] == reference}
    for r in rows:
        base = ref.get(r["task"])
        tok_ratio = _ratio(r, base, "fresh_prompt_tokens")
        time_ratio = _ratio(r, base, "fresh_wall_s")
        lines.append(
            f"| {r['task']} | {r['method']} | {len(r['seeds'])} | {100 * r['test_accuracy']:.1f} ± "
            f"{100 * r['test_accuracy_sd']:.1f} % (n={r['n_test']}) | {r['compile_wall_s']:.0f} | "
            f"{r['optimizer_calls']:.0f} ({r['optimizer_billed_calls']:.0f}) | {_tokens(r)} | "
            f"{r['peak_optimizer_prompt_tokens']} | "
            f"{r['task_calls']:.0f} | {tok_ratio} | {time_ratio} |"
        )
    return "\n".join(lines)


def cell_table(cells: list[dict]) -> str:
    """One line per (method, seed) cell, with the code that made it: the figures behind the means."""
    lines = ["| task | method | seed | test acc | compile wall s | optimizer calls (billed) | optimizer prompt "
             "tokens | peak optimizer prompt | task-LM calls (billed) | test prompt tokens per call ² | resumed | code |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (c["task"], c["method"], c["seed"])):
        opt, task = c.get("optimizer_usage") or {}, c.get("task_usage") or {}
        lines.append(
            f"| {c['task']} | {c['method']} | {c['seed']} | {100 * c['test_accuracy']:.1f} % | "
            f"{c['compile_wall_s']:.0f} | {opt.get('calls', 0)} ({_billed(opt)}) | "
            f"{opt.get('prompt_tokens', 0)} | {opt.get('peak_prompt_tokens', 0)} | {task.get('calls', 0)} "
            f"({_billed(task)}) | {_per_test_call(c)} | {_resumed(c)} | "
            f"{_code(c)} |")
    return "\n".join(lines)


def stage_table(cells: list[dict]) -> str:
    """Where each FGO-style compile spent its time and LM use, stage by stage (cells whose report
    has ``stage_usage``); empty when none has."""
    lines = []

    def row(c, stage, wall_s, roles):
        task, opt = roles.get("task", {}), roles.get("optimizer", {})
        lines.append(f"| {c['method']} | {c['seed']} | {stage} | {wall_s or 0:.0f} | "
                     f"{task.get('billed_calls', 0)} | {task.get('prompt_tokens', 0) + task.get('completion_tokens', 0)} | "
                     f"{opt.get('billed_calls', 0)} | {opt.get('prompt_tokens', 0) + opt.get('completion_tokens', 0)} |")

    for c in sorted(cells, key=lambda c: (c["task"], c["method"], c["seed"])):
        report = c.get("report") or {}
        source = c.get("partitions_from")
        if source and source.get("optimize_stage_s") is not None:
            # Its partitions were another cell's: that cell paid their stage, so a whole compile is
            # the sum of the rows (two measured parts, not one measured run).
            row(c, f"optimize, paid by {Path(source['cell']).stem} ({source.get('code_version')})",
                source["optimize_stage_s"], source.get("optimize_stage_usage") or {})
        for stage, roles in (report.get("stage_usage") or {}).items():
            row(c, stage, report["timings"].get(stage, 0), roles)
    if not lines:
        return ""
    return "\n".join(["| method | seed | stage | wall s | task calls (billed) | task tokens | optimizer calls "
                      "(billed) | optimizer tokens |", "|---|---|---|---|---|---|---|---|"] + lines)


def _per_test_call(cell: dict) -> str:
    """Prompt tokens per test call: what every later call of the returned program pays. Blank when
    some test calls were replayed from DSPy's cache (no tokens) or the cell predates the figure."""
    usage = cell.get("test_usage") or {}
    if not usage.get("calls") or usage.get("billed_calls") != usage["calls"]:
        return ""
    return f"{usage['prompt_tokens'] / usage['calls']:.0f}"


def _code(cell: dict) -> str:
    """The code that made a cell: every attempt's, when a resumed cell's attempts ran different code."""
    versions = list(dict.fromkeys([a.get("code_version") or "not recorded" for a in cell.get("earlier_attempts", [])]
                                  + [cell.get("code_version") or "not recorded"]))
    return " then ".join(versions)


def _resumed(cell: dict) -> str:
    if cell.get("cost_over_attempts"):
        return f"yes, cost summed over {cell['cost_over_attempts']} attempts"
    return "yes" if cell.get("resumed") else ""


def plots(rows: list[dict], out: Path) -> list[str]:
    """Accuracy against optimizer prompt tokens (the paper's Figure 5) and against wall time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    for key, label, name in (("optimizer_prompt_tokens", "optimizer prompt tokens", "acc_vs_tokens.png"),
                             ("compile_wall_s", "compile wall time (s)", "acc_vs_time.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            ax.errorbar(r[key], 100 * r["test_accuracy"], yerr=100 * r["test_accuracy_sd"], fmt="o", capsize=3)
            ax.annotate(f"{r['method']}", (r[key], 100 * r["test_accuracy"]), textcoords="offset points", xytext=(5, 5))
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(", ".join(sorted({r["task"] for r in rows})))
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        made.append(name)
    return made


def write_summary(out: Path, config: dict) -> None:
    cells = load_cells(out)
    rows = aggregate(cells)
    (out / "results.json").write_text(json.dumps({"config": config, "rows": rows, "cells": cells}, indent=2))
    _write_markdown(out, commands(cells, config), rows, cells)


def commands(cells: list[dict], config: dict) -> list[str]:
    """The header of ``results.md``: the command of every run that made a cell here, from the cells
    themselves (a directory filled by several runs, one seed or method at a time, names them all)."""
    made = list(dict.fromkeys(c["command"] for c in cells if c.get("command"))) or [config.get("command", "")]
    if len(made) == 1:
        return [f"Command: `{made[0]}`", ""]
    return ["Commands (the cells record which made them):", ""] + [f"- `{c}`" for c in made] + [""]


def _write_markdown(out: Path, header: list[str], rows: list[dict], cells: list[dict]) -> None:
    """``results.md``: the rows, the cells with their footnotes, where the compile went, the plots."""
    images = plots(rows, out)
    md = header + [table(rows), ""]
    md += [TOKEN_FOOTNOTE, "", RATIO_FOOTNOTE, ""]
    md += ["Cells:", "", cell_table(cells), "", PER_CALL_FOOTNOTE, ""]
    md += [RESUMED_FOOTNOTE, ""] if any(r["resumed_seeds"] for r in rows) else []
    stages = stage_table(cells)
    md += ["Where the compile went (tokens: prompt and completion):", "", stages, ""] if stages else []
    md += [f"![{name}]({name})" for name in images]
    (out / "results.md").write_text("\n".join(md) + "\n")


def combine(sources: list[tuple[Path, set[str]]], out: Path, command: str = "") -> None:
    """One summary and one pair of plots from chosen methods of several runs: the headline puts the
    current FGO beside cells kept from earlier runs (whose code paths did not change). Each
    method must come from one run, so that its seeds are one version's."""
    cells, origin = [], {}
    for directory, methods in sources:
        for cell in load_cells(directory):
            if cell["method"] not in methods:
                continue
            if origin.setdefault(cell["method"], directory) != directory:
                raise ValueError(f"method {cell['method']} comes from both {origin[cell['method']]} and {directory}")
            cells.append(cell)
    if not cells:
        raise ValueError("no cells of the chosen methods in the given runs")
    out.mkdir(parents=True, exist_ok=True)
    sources_line = "Cells from: " + ", ".join(f"{m} ({d})" for m, d in sorted(origin.items()))
    _write_markdown(out, [f"Command: `{command}`", "", sources_line, ""], aggregate(cells), cells)


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                description="Combine methods of several benchmark runs into one summary and plots.")
    p.add_argument("--from", dest="sources", action="append", required=True, metavar="DIR:METHOD,METHOD",
                   help="a run directory and the methods to take from it (repeatable)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    sources = []
    for source in args.sources:
        directory, _, methods = source.rpartition(":")
        if not directory or not methods:
            p.error(f"--from takes DIR:METHOD[,METHOD...]; got {source!r}")
        sources.append((Path(directory), {m.strip() for m in methods.split(",")}))
    command = "python -m benchmarks.report " + " ".join(sys.argv[1:] if argv is None else argv)
    combine(sources, Path(args.out), command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

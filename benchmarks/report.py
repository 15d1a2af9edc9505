"""Summaries of benchmark cells: results.json, a Markdown table (mean and spread over seeds), plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

REFERENCE = "mipro-instructions"  # ratios are given against this method when it ran


def load_cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fully_billed(usage: dict) -> bool:
    """False when DSPy's disk cache replayed some calls: their tokens are missing from the cell's usage."""
    return usage.get("billed_calls", usage.get("calls", 0)) == usage.get("calls", 0)


def aggregate(cells: list[dict]) -> list[dict]:
    """One row per (task, method): means over seeds.

    Optimizer token means use only the cells whose optimizer calls were all billed: a resumed run replays
    cached calls without their usage, which would pull the mean down. ``token_seeds`` says which cells count.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["method"]), []).append(cell)
    rows = []
    for (task, method), group in groups.items():
        acc, acc_sd = _mean_sd([c["test_accuracy"] for c in group])
        opt = [c.get("optimizer_usage") or {} for c in group]
        complete = [u for u in opt if _fully_billed(u)]
        rows.append({
            "task": task, "method": method, "seeds": sorted(c["seed"] for c in group),
            "test_accuracy": acc, "test_accuracy_sd": acc_sd, "n_test": group[0]["n_test"],
            "compile_wall_s": statistics.mean(c["compile_wall_s"] for c in group),
            "optimizer_calls": statistics.mean(u.get("calls", 0) for u in opt),
            "optimizer_billed_calls": statistics.mean(u.get("billed_calls", u.get("calls", 0)) for u in opt),
            "token_seeds": sorted(c["seed"] for c, u in zip(group, opt) if _fully_billed(u)),
            # With no complete cell, the billed part is a lower bound: shown with "≥", never used in a ratio.
            "optimizer_prompt_tokens": statistics.mean(u.get("prompt_tokens", 0) for u in complete or opt),
            "optimizer_completion_tokens": statistics.mean(u.get("completion_tokens", 0) for u in complete or opt),
            "peak_optimizer_prompt_tokens": max(u.get("peak_prompt_tokens", 0) for u in opt),
            "task_calls": statistics.mean((c.get("task_usage") or {}).get("calls", 0) for c in group),
        })
    return sorted(rows, key=lambda r: (r["task"], r["method"]))


def _tokens(row: dict) -> str:
    if not row["token_seeds"]:
        return f"≥ {row['optimizer_prompt_tokens']:.0f} †"
    partial = len(row["token_seeds"]) < len(row["seeds"])
    return f"{row['optimizer_prompt_tokens']:.0f}" + (f" (seeds {row['token_seeds']}) †" if partial else "")


TOKEN_FOOTNOTE = ("† Some optimizer calls of a cell were replayed from DSPy's disk cache (an interrupted run "
                  "resumed) and carry no usage. Token means use only the cells whose calls were all billed; "
                  "with none, the billed part is shown as a lower bound (≥) and left out of the ratios. Such a cell's "
                  "compile wall time, too, covers only its last attempt.")


def table(rows: list[dict]) -> str:
    lines = [
        "| task | method | seeds | test acc (mean ± sd) | compile wall s | optimizer calls (billed) "
        "| optimizer prompt tokens "
        f"| peak optimizer prompt | task-LM calls | tokens vs {REFERENCE} | time vs {REFERENCE} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = {r["task"]: r for r in rows if r["method"] == REFERENCE}
    for r in rows:
        base = ref.get(r["task"])
        tok_ratio = (f"{r['optimizer_prompt_tokens'] / base['optimizer_prompt_tokens']:.2f}x"
                     if base and base["token_seeds"] and base["optimizer_prompt_tokens"] and r["token_seeds"]
                     and r["method"] != "unoptimized" else "")
        time_ratio = (f"{r['compile_wall_s'] / base['compile_wall_s']:.2f}x"
                      if base and base["compile_wall_s"] and r["method"] != "unoptimized" else "")
        lines.append(
            f"| {r['task']} | {r['method']} | {len(r['seeds'])} | {100 * r['test_accuracy']:.1f} ± "
            f"{100 * r['test_accuracy_sd']:.1f} % (n={r['n_test']}) | {r['compile_wall_s']:.0f} | "
            f"{r['optimizer_calls']:.0f} ({r['optimizer_billed_calls']:.0f}) | {_tokens(r)} | "
            f"{r['peak_optimizer_prompt_tokens']} | "
            f"{r['task_calls']:.0f} | {tok_ratio} | {time_ratio} |"
        )
    return "\n".join(lines)


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
    images = plots(rows, out)
    md = [f"Command: `{config.get('command', '')}`", "", table(rows), ""]
    if any(len(r["token_seeds"]) < len(r["seeds"]) for r in rows):
        md += [TOKEN_FOOTNOTE, ""]
    md += [f"![{name}]({name})" for name in images]
    (out / "results.md").write_text("\n".join(md) + "\n")

"""Pictures of a report: the merge tree (as the paper's Figure 8) and scores per partition.

Matplotlib is optional (``pip install "dspy-fgo[plots]"``); files are written, nothing is shown.
"""

from __future__ import annotations

from pathlib import Path

from dspy_fgo.report.report import Report


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('plots need matplotlib: pip install "dspy-fgo[plots]"') from exc
    return plt


def plot_tree(report: Report, path: str | Path) -> Path:
    """Leaves (partitions) at the bottom, merges above; each node labelled with its score."""
    plt = _pyplot()
    nodes = report.tree
    leaves, todo = [], [nodes[-1]]
    while todo:  # depth-first from the root, so that no edges cross
        node = todo.pop()
        if node["children"]:
            todo += [nodes[c] for c in reversed(node["children"])]
        else:
            leaves.append(node)
    x = {n["id"]: float(i) for i, n in enumerate(leaves)}
    for node in sorted(nodes, key=lambda n: n["level"]):
        if node["children"]:
            x[node["id"]] = sum(x[c] for c in node["children"]) / len(node["children"])
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(leaves)), 2 + 1.2 * max(n["level"] for n in nodes)))
    for node in nodes:
        for child in node["children"]:
            ax.plot([x[node["id"]], x[child]], [node["level"], nodes[child]["level"]], color="0.6", zorder=1)
    returned = report.selection.get("returned")
    for node in nodes:
        chosen = returned == "root" and node is nodes[-1] or returned == f"node {node['id']}"
        routes = (node.get("route") or {}).get("routes")
        color = "tab:green" if chosen else "tab:orange" if routes else "tab:blue"
        ax.scatter(x[node["id"]], node["level"], s=300, zorder=2, color=color)
        label = f"{node['score']:.2f}" + ("\nroutes" if routes else "")
        if node.get("partition"):
            label = f"{node['partition']}\n{label}"
        ax.annotate(label, (x[node["id"]], node["level"]), textcoords="offset points", xytext=(0, 12),
                    ha="center", fontsize=7)
    ax.set_yticks(range(1 + max(n["level"] for n in nodes)))
    ax.set_ylabel("merge level")
    ax.set_xticks([])
    ax.set_title(f"{report.method} merge tree (green: returned; orange: keeps its specialist; labels: validation score)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_partitions(report: Report, path: str | Path) -> Path:
    """Each partition's score before and after its own optimization."""
    plt = _pyplot()
    names = [p.name for p in report.partitions]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 4))
    positions = range(len(names))
    ax.bar([i - 0.2 for i in positions], [p.score_before for p in report.partitions], width=0.4, label="before")
    ax.bar([i + 0.2 for i in positions], [p.score_after for p in report.partitions], width=0.4, label="after")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("score on the partition")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

"""What a compile did, as plain data: partitions, the merge tree, usage per role, timings.

``to_dict()`` is JSON-serialisable, ``save``/``load`` round-trip it, ``summary()`` prints a short
account for people.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PartitionReport:
    name: str
    size: int
    score_before: float
    score_after: float
    candidate: dict[str, str]
    epochs: list[dict] = field(default_factory=list)  # [{"epoch", "score", "critiques", "lessons", "proposals"}]
    task_description: str = ""
    checks: int = 0  # held-out examples its changes were judged on


@dataclass
class Report:
    method: str = "FGO"
    settings: dict[str, Any] = field(default_factory=dict)
    partitions: list[PartitionReport] = field(default_factory=list)
    tree: list[dict] = field(default_factory=list)  # MergeNode dicts; the root is the last one
    steps: list[dict] = field(default_factory=list)  # the baselines' sequential updates
    selection: dict[str, Any] = field(default_factory=dict)  # what was returned and why
    usage: dict[str, dict] = field(default_factory=dict)  # role -> calls / tokens
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    stage_usage: dict[str, dict] = field(default_factory=dict)  # stage -> role -> calls / tokens it spent
    events: dict[str, int] = field(default_factory=dict)  # prompt trims, rejected proposals, errors
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        data = dict(data)
        data["partitions"] = [PartitionReport(**p) for p in data.get("partitions", [])]
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def root(self) -> dict | None:
        return self.tree[-1] if self.tree else None

    def summary(self) -> str:
        lines = [f"{self.method}: {len(self.partitions)} partitions, {len(self.tree)} tree nodes" if self.tree
                 else f"{self.method}:"]
        for p in self.partitions:
            tried = [x for e in p.epochs for x in e.get("proposals", [])]
            shown = (f" on {p.checks} held-out" if p.checks else "") + (
                f"; {sum(x['accepted'] for x in tried)}/{len(tried)} changes accepted" if tried else "")
            lines.append(f"  partition {p.name!r:<28} n={p.size:<4} score {p.score_before:.2f} -> {p.score_after:.2f}"
                         + shown)
        for node in self.tree:
            if node["children"]:
                lines.append(
                    f"  merge node {node['id']:<3} level {node['level']} children {node['children']} "
                    f"judged on {len(node.get('checks') or node['examples'])} held-out: score {node['score']:.2f} "
                    f"({node['made_by']})"
                )
        decided = [n for n in self.tree if (n.get("route") or {}).get("routes") is not None]
        if decided:
            routed = [n["partition"] for n in decided if n["route"]["routes"]]
            lines.append(f"  routing: {len(routed)} of {len(decided)} partitions keep their own specialist"
                         + (f" ({', '.join(routed)})" if routed else "")
                         + "; the rest get the returned program")
        if self.steps:
            changed = sum(1 for step in self.steps if step["changed"])
            lines.append(f"  {len(self.steps)} updates ({changed} changed the candidate)")
        if self.selection:
            lines.append(f"  returned: {self.selection.get('returned')} - {self.selection.get('reason', '')}")
            if self.selection.get("route"):
                lines.append(f"  route: {self.selection['route']}")
        for role, u in self.usage.items():
            if u.get("calls"):
                lines.append(
                    f"  {role:<9} {u['calls']} calls ({u['billed_calls']} billed), "
                    f"{u['prompt_tokens']} prompt ({u.get('cached_prompt_tokens', 0)} cached) + "
                    f"{u['completion_tokens']} completion tokens, "
                    f"peak prompt {u['peak_prompt_tokens']}"
                )
        if self.timings:
            lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        for stage, roles in self.stage_usage.items():
            if roles:
                lines.append(f"  {stage}: " + "; ".join(
                    f"{role} {u['billed_calls']} billed calls, {u['prompt_tokens'] + u['completion_tokens']} tokens"
                    for role, u in roles.items()))
        if self.events:
            lines.append("  events: " + ", ".join(f"{k}={v}" for k, v in self.events.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

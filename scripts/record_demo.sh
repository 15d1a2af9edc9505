#!/usr/bin/env bash
# Record the demo's transcript as a new user meets it: `bash scripts/demo.sh` in a fresh clone of
# this repository's HEAD, with a new .venv and an empty DSPy cache, written to
# benchmarks/results/demo/transcript.txt. The only changes to what the command prints: pip's
# "Location ... is ignored" lines (this machine's mirror configuration) are dropped, and each
# progress bar is shown in its final state (a terminal redraws it in place). Extra arguments go to
# the demo. Run it on an idle machine: the transcript reports wall time.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
code="$(git -C "$repo" rev-parse --short HEAD)"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
start=$(date +%s)
(cd "$work/clone" && DSPY_CACHEDIR="$work/dspy-cache" bash scripts/demo.sh "$@") > "$work/raw.txt" 2>&1 || status=$?
wall=$(( $(date +%s) - start ))
out="$repo/benchmarks/results/demo/transcript.txt"
{
  echo "# bash scripts/demo.sh $*, in a fresh clone ($code) with a new .venv and an empty DSPy cache,"
  echo "# started $started; $((wall / 60)) min $((wall % 60)) s, install included; exit status ${status:-0}."
  echo "# Recorded by scripts/record_demo.sh: pip's mirror-location warnings are dropped and each progress"
  echo "# bar is shown in its final state; nothing else is changed."
  python3 - "$work/raw.txt" <<'PY'
import re, sys
bar = re.compile(r"^([^:]+): .*\[\d+:\d\d")  # a progress bar's line: "<description>: ... [mm:ss"
kept, last = [], None
for line in open(sys.argv[1], encoding="utf-8", errors="replace").read().split("\n"):
    line = ([part for part in line.split("\r") if part.strip()][-1:] or [""])[0]
    if re.match(r"\s*WARNING: Location '.*' is ignored", line):
        continue
    match = bar.match(line)
    if match and last == match.group(1):
        kept[-1] = line  # the same bar, redrawn: keep its latest state
        continue
    last = match.group(1) if match else None
    kept.append(line)
print("\n".join(kept))
PY
} > "$out"
echo "wrote $out ($((wall / 60)) min $((wall % 60)) s)"
exit "${status:-0}"

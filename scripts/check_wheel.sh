#!/usr/bin/env bash
# Build the wheel and install it, with its declared dependencies only, into a fresh virtual
# environment outside the repository; then import it and use the packaged data. Catches a module
# or data file missing from the package, or a dependency used but not declared.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel . --no-deps -q -w "$work/dist"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/dspy_fgo-*.whl
cd "$work"  # not the repository: the import must come from the installed wheel
LITELLM_LOCAL_MODEL_COST_MAP=True "$work/venv/bin/python" - <<'PY'
import dspy_fgo
from dspy_fgo import FGO, AllAtOnce, load_routed
from dspy_fgo.data import load_bbh, split_bbh

assert "site-packages" in dspy_fgo.__file__, dspy_fgo.__file__
examples = load_bbh(tasks=["navigate", "snarks"])
train, val, test = split_bbh(examples, 2, 2, 2)
fgo = FGO(metric=lambda example, prediction, trace=None: 1.0, auto="light")
print(f"wheel OK: {dspy_fgo.__file__}, {len(examples)} packaged BBH examples, preset light epochs={fgo.epochs}")
PY

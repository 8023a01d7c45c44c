#!/usr/bin/env bash
# Sets up and runs the whole test suite (the README's second command; CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1
python -m pytest -q -p no:cacheprovider "$@"

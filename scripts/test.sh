#!/usr/bin/env bash
# Sets up and runs the whole test suite (the README's second command; CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The app's browser test drives the system Chromium (Playwright's own browser download does not work
# everywhere); install it when missing and apt is there, else that one test skips and says why.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && command -v apt-get >/dev/null; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
        || echo "scripts/test.sh: could not install chromium with apt-get; the browser test will be skipped."
fi
# Lint and format first: a style slip fails in seconds, not after the 10-minute suite.
python -m ruff check .
python -m ruff format --check .
export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1
python -m pytest -q -p no:cacheprovider "$@"

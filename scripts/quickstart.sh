#!/usr/bin/env bash
# Sets up and runs the quickstart (the README's first command): a beta-VAE on the built-in shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e .
python -m lightning_gen fit --config configs/quickstart.yaml "$@"

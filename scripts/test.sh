#!/usr/bin/env bash
# Fresh machine -> the whole test suite: set-up, lint, type check, every test
# (slow, S3 and kill-and-resume included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"; ruff check src tests bench examples; ruff format --check src tests bench examples
echo "== mypy"; mypy
echo "== pytest"; PIXELS_STRICT_SKIPS=1 python -m pytest -q -p no:cacheprovider "$@"
echo "== pytest -m spark on Spark 3.5"; bash scripts/spark35.sh

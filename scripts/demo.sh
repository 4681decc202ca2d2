#!/usr/bin/env bash
# Fresh machine -> a catalog of real DICOM files (pydicom's bundled test files and
# the pydicom-data package), a summary, and an example query.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
rm -rf ./sample-catalog
pixels demo --table ./sample-catalog

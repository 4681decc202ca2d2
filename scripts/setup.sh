#!/usr/bin/env bash
# Set up everything Pixels needs on a fresh machine: a virtual environment with
# the package and its test dependencies, dcmtk (used by tests to transcode) and
# libopenjp2 (JPEG 2000 decoding at reduced resolution, loaded with ctypes).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e ".[test]"
if ! command -v dcmconv >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep libopenjp2.so.7 >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk libopenjp2-7) >/dev/null
  else
    echo "note: dcmtk or libopenjp2 is not installed (sudo apt-get install dcmtk libopenjp2-7); tests that transcode or reduce JPEG 2000 will fail" >&2
  fi
fi

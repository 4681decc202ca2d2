#!/usr/bin/env bash
# Set up everything Pixels needs on a fresh machine: a virtual environment with
# the package and its test dependencies, dcmtk (used by tests to transcode, and as
# DIMSE peers with Orthanc, which the tests start themselves) and
# libopenjp2 (JPEG 2000 decoding at reduced resolution, loaded with ctypes),
# Debian's chromium (browser tests drive it with Playwright, which downloads no
# browser) and the pinned OHIF viewer from npm into .cache/ohif (git ignores it).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e ".[test,spark]"
# pixels.ml: torch pinned first (an unpinned torch resolves to the multi-GB CUDA build), then the
# ml extra (monai, scipy, scikit-image) against it; pip skips both when already installed
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[ml]"
if ! command -v dcmconv >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep libopenjp2.so.7 >/dev/null \
  || [ ! -x /usr/bin/chromium ] || ! command -v java >/dev/null 2>&1 || [ ! -x /usr/sbin/Orthanc ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk libopenjp2-7 chromium openjdk-17-jre-headless orthanc) >/dev/null
  else
    echo "note: dcmtk, libopenjp2, chromium, Java or Orthanc is not installed (sudo apt-get install dcmtk libopenjp2-7 chromium openjdk-17-jre-headless orthanc); tests that transcode, reduce JPEG 2000, drive the browser, run Spark or talk DIMSE will fail" >&2
  fi
fi
# the OHIF viewer served at / (npm pack @ohif/app, pinned; skipped when installed)
python -m pixels.web.ohif install --quiet
# MONAI Label's OHIF build served at /ohif/ (pip download --no-deps monailabel, pinned; skipped when installed)
python -m pixels.web.monailabel_ohif install --quiet

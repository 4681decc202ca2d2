#!/usr/bin/env bash
# The Spark tests again on the oldest Spark line Pixels supports (3.5), in
# .venv-spark35: the same packages as .venv (pinned from it), pyspark 3.5.
# Called by scripts/test.sh after the main run; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-spark35/bin/python ] || ! .venv-spark35/bin/python -c "import pyspark, pixels" 2>/dev/null; then
  "${PYTHON:-python3}" -m venv .venv-spark35
  .venv/bin/python -m pip freeze --exclude-editable | grep -vi '^pyspark==' > .venv-spark35/requirements.txt
  .venv-spark35/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-spark35/bin/python -m pip install -q -r .venv-spark35/requirements.txt "pyspark>=3.5,<3.6"
  .venv-spark35/bin/python -m pip install -q --no-deps -e .
fi
.venv-spark35/bin/python -c "import pyspark; print('pyspark', pyspark.__version__)"
PIXELS_STRICT_SKIPS=1 .venv-spark35/bin/python -m pytest -q -p no:cacheprovider -m spark "$@"

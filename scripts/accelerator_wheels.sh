#!/usr/bin/env bash
# Downloads into .whl/ the pure-Python wheels that scripts/accelerator_check.sh
# needs beyond a stock JAX GPU/TPU image (gin-config, rouge-score, nltk;
# ~1.9 MB), for a VM that cannot reach a package index: copy .whl/ with the
# work tree and the check installs them without network.
#   scripts/accelerator_wheels.sh        # on a machine that reaches PyPI
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d .whl \
  gin-config==0.5.0 nltk
# rouge-score is published as a source distribution only: build its wheel.
"$PYTHON" -m pip wheel -q --no-deps -w .whl rouge-score==0.1.2
ls -l .whl

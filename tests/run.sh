#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend, each in its own process
# (Keras fixes its backend at import time). Extra arguments go to pytest.
# Exit status is non-zero if any backend's suite fails.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
backends=${KLM_TEST_BACKENDS:-"tensorflow jax torch"}
failed=()
for backend in $backends; do
  echo "=== tests on the ${backend} backend ==="
  KERAS_BACKEND=$backend "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
  status=$?
  if [ $status -ne 0 ]; then failed+=("$backend (exit $status)"); fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED backends: ${failed[*]}"
  exit 1
fi
echo "all backends passed: $backends"

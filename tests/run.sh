#!/usr/bin/env bash
# Runs the test suite once per Keras backend, each in its own process (Keras
# fixes its backend at import time). Exit status is non-zero if any backend's
# suite fails. Two tiers:
#
#   bash tests/run.sh           the quick tier (the README's test command, a few
#                               minutes): the unit tests beside the modules
#                               (klm/**/*_test.py) and the end-to-end smoke tests
#                               of tests/ (marked `smoke`), every backend, except
#                               those marked `heavy` (10 s or more each)
#   bash tests/run.sh --full    everything (what CI runs): every end-to-end test
#                               and every heavy one too
#
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k resume`).
#
# The three suites run at the same time (KLM_TEST_PARALLEL=0 runs them one
# after another): much of each suite is single-threaded (XLA and tf.function
# compilation, Python-side Keras), so on a 2-core machine running them side by
# side cut the wall time of the whole run by about a third. Each suite's output
# goes to a log that is printed, whole, when the suite ends.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
tier=quick
if [ "${1:-}" = "--full" ]; then
  tier=full
  shift
fi
if [ "$tier" = "quick" ]; then
  # tests/conftest.py marks every test under klm/ `unit`.
  select=(-m "(unit or smoke) and not slow and not heavy")
else
  select=()
fi
echo "=== test tier: ${tier} ==="
backends=${KLM_TEST_BACKENDS:-"tensorflow jax torch"}
parallel=${KLM_TEST_PARALLEL:-1}
# PyTorch's OpenMP threads otherwise spin while waiting and starve the other suites.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# Tests marked slow (whole jobs killed and resumed, exports) run on these
# backends only; JAX's compilation makes them slowest there. Its exact resume
# is still covered by the 2-process JAX test and the kill-and-resume CLI test.
export KLM_SLOW_BACKENDS=${KLM_SLOW_BACKENDS:-"tensorflow torch"}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()

# Lint and format first (ruff, configured in pyproject.toml; a second or two).
echo "=== ruff check and ruff format --check ==="
if "$PYTHON" -m ruff check klm cli tests examples && "$PYTHON" -m ruff format --check klm cli tests examples; then
  echo "lint: clean"
else
  failed+=("lint (run: ruff check --fix klm cli tests examples && ruff format klm cli tests examples)")
fi

run_suite() {
  KERAS_BACKEND=$1 "$PYTHON" -m pytest -q -p no:cacheprovider --durations=20 "${select[@]}" "${@:2}"
}

report() {  # backend status
  if [ "$2" -ne 0 ]; then failed+=("$1 (exit $2)"); fi
}

if [ "$parallel" = "1" ]; then
  declare -A pids
  start=$SECONDS
  for backend in $backends; do
    run_suite "$backend" "$@" >"$logs/$backend.log" 2>&1 &
    pids[$backend]=$!
    echo "=== started the ${backend} suite (log printed when it ends) ==="
  done
  for backend in $backends; do
    wait "${pids[$backend]}"
    status=$?
    echo "=== tests on the ${backend} backend (exit ${status}, $((SECONDS - start)) s) ==="
    cat "$logs/$backend.log"
    report "$backend" "$status"
  done
else
  for backend in $backends; do
    echo "=== tests on the ${backend} backend ==="
    run_suite "$backend" "$@"
    report "$backend" $?
  done
fi
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED backends: ${failed[*]}"
  exit 1
fi
echo "all backends passed ($tier tier): $backends"

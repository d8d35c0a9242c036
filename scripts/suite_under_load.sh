#!/usr/bin/env bash
# The fast suite several times in a row on a clean clone, next to CPU-heavy processes (issue #14's race check).
#
#   scripts/suite_under_load.sh                 # 3 runs of `pytest` on core 0, busy loops on cores 0 and 1
#   RUNS=1 HOG_CORES=0 scripts/suite_under_load.sh   # one run, one busy loop (another job holds core 1)
#
# The clone is of HEAD, in a temporary folder, with this checkout's environment (PYTHONPATH points at the clone).
# Prints one line per run: exit status, pytest's summary line and the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
suite_core=${SUITE_CORE:-0}
read -r -a hog_cores <<< "${HOG_CORES:-0 1}"
clone=$(mktemp -d)
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null || true; rm -rf "$clone"' EXIT
git clone -q . "$clone"
for core in "${hog_cores[@]}"; do
  taskset -c "$core" python -c "while True: pass" &
  hogs+=($!)
done
echo "commit $(git -C "$clone" rev-parse --short HEAD); suite on core $suite_core; busy loops on cores ${hog_cores[*]}"
for run in $(seq "$runs"); do
  started=$SECONDS
  status=0
  (cd "$clone" && env -u OMP_NUM_THREADS PYTHONPATH="$clone" taskset -c "$suite_core" pytest -p no:cacheprovider \
    > "$clone/run$run.log" 2>&1) || status=$?
  echo "run $run: exit $status, $(tail -1 "$clone/run$run.log"), $((SECONDS - started)) s"
  [[ $status -eq 0 ]] || cp "$clone/run$run.log" "suite_under_load-run$run.log"
done

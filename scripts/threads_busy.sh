#!/usr/bin/env bash
# How the quickstart's wall time depends on OpenMP's wait policy when the cores are busy: the quickstart
# (`lit-vir fit -c configs/quickstart.yaml`, default threads) run REPEATS times each with OMP_WAIT_POLICY ACTIVE
# (PyTorch's default) and PASSIVE (lit_vir's default), on an idle machine and next to HOGS busy-looping processes.
# Prints one line per run and the medians; docs/benchmarks.md quotes them.
#   scripts/threads_busy.sh                        # the whole machine
#   CPUS=0 THREADS=2 scripts/threads_busy.sh       # squeezed onto one core (taskset), 2 OpenMP threads forced
# LIMIT (default 900 s) stops a run that takes longer; its time is then printed as the limit and marked ">".
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-3}
LIMIT=${LIMIT:-900}
HOGS=${HOGS:-2}
pin=()
[ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
threads=()
[ -n "${THREADS:-}" ] && threads=("OMP_NUM_THREADS=$THREADS")
work=$(mktemp -d)
run() {  # run POLICY LOAD: one timed quickstart
  local start end mark=""
  start=$(date +%s.%N)
  (cd "$work" && env "${threads[@]}" OMP_WAIT_POLICY="$1" timeout "$LIMIT" "${pin[@]}" lit-vir fit \
    -c "$OLDPWD/configs/quickstart.yaml" --trainer.enable_progress_bar false --trainer.logger false >/dev/null 2>&1) ||
    mark=">"
  end=$(date +%s.%N)
  echo "$1 $2 $(echo "$end - $start" | bc) $mark"
}
results=()
for load in idle busy; do
  hogs=()
  if [ "$load" = busy ]; then
    for _ in $(seq "$HOGS"); do "${pin[@]}" python3 -c "while True: pass" & hogs+=($!); done
  fi
  for _ in $(seq "$REPEATS"); do
    for policy in ACTIVE PASSIVE; do results+=("$(run "$policy" "$load")"); echo "${results[-1]}"; done
  done
  [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}"
done
printf '%s\n' "${results[@]}" | python3 -c "
import statistics, sys
rows = [line.split() + [''] for line in sys.stdin]
for load in ('idle', 'busy'):
    for policy in ('ACTIVE', 'PASSIVE'):
        times = [float(row[2]) for row in rows if row[:2] == [policy, load]]
        stopped = sum(row[3] == '>' for row in rows if row[:2] == [policy, load])
        note = f' ({stopped} stopped at the {max(times):.0f} s limit)' if stopped else ''
        print(f'median {load:4} {policy:7} {statistics.median(times):7.1f} s  over {len(times)} runs{note}')
"
rm -rf "$work"

#!/usr/bin/env bash
# The sweep engine's throughput on this machine: the same 8-trial grid on digits (configs/sweep/digits.yaml with
# seeds 1–4: ViR and no_reservoir, 10 epochs each) with 1 and with 2 local workers, each pinned to its own core,
# REPEATS times each in turns; trials per hour of each and their ratio (the goal is ≥ 1.8 with 2 workers on 2 cores).
# Run it with both cores free: anything else running shows in the load averages it records.
#   scripts/sweep_throughput.sh                 # → docs/measurements/sweep-throughput.json
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-2}
EPOCHS=${EPOCHS:-10}  # per trial: longer trials make the sweep's fixed start (imports, validation) a smaller share
OUT=${OUT:-docs/measurements/sweep-throughput.json}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1
results=()
for repeat in $(seq "$REPEATS"); do
  for workers in 1 2; do
    cores=$([ "$workers" = 1 ] && echo "[1]" || echo "[0, 1]")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    lit-vir sweep run -c configs/sweep/digits.yaml --name "throughput_w${workers}_r${repeat}" --out "$WORK" \
      --grid.seeds "[1, 2, 3, 4]" --overrides "{trainer.max_epochs: $EPOCHS, test_after_fit: false}" \
      --launcher.workers "$workers" --launcher.cores "$cores" > "$WORK/log_w${workers}_r${repeat}.txt" 2>&1
    end=$(date +%s.%N)
    results+=("{\"workers\": $workers, \"repeat\": $repeat, \"seconds\": $(python3 -c "print($end - $start)"), \"load_before\": \"$load\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}")
  done
done
python3 - "$OUT" "$(git rev-parse --short HEAD)" "$EPOCHS" "${results[@]}" <<'PYTHON'
import json, statistics, sys, platform
out, commit, epochs, *rows = sys.argv[1:]
rows = [json.loads(row) for row in rows]
median = {w: statistics.median(r["seconds"] for r in rows if r["workers"] == w) for w in (1, 2)}
per_hour = {w: 8 * 3600 / median[w] for w in median}
summary = {
    "command": "scripts/sweep_throughput.sh",
    "commit": commit,
    "machine": platform.platform(),
    "grid": f"configs/sweep/digits.yaml, seeds 1-4 (8 trials), {epochs} epochs each",
    "runs": rows,
    "median_seconds": median,
    "trials_per_hour": per_hour,
    "ratio_2_over_1": per_hour[2] / per_hour[1],
}
open(out, "w").write(json.dumps(summary, indent=2) + "\n")
print(json.dumps({"trials_per_hour": per_hour, "ratio": summary["ratio_2_over_1"]}, indent=2))
PYTHON

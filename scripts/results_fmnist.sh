#!/usr/bin/env bash
# docs/results.md's main table: ViR, its ablations, the ViTs, the variants and two timm models on the full
# Fashion-MNIST (54,000 train / 6,000 validation / 10,000 test), every run under the same wall-time budget on one
# CPU thread (configs/recipe/budget.yaml: stop at --trainer.max_time, schedules decay over the budget), tested
# at the end on the best-validation checkpoint (test/*) and the final weights (test_last/*), FLOPs logged.
#
#   scripts/results_fmnist.sh list                 # the jobs, one per line: name, then the command
#   JOBS=2 scripts/results_fmnist.sh train         # run every job not yet done; JOBS workers, each on its own core
#   scripts/results_fmnist.sh robustness           # 15 corruptions × 5 severities on the seed-1 checkpoints
#   scripts/results_fmnist.sh perturb              # lit-vir perturb noise curves, ViR-1 against both ViT-Smalls
#   scripts/results_fmnist.sh compare              # the table and the frontier figure → docs/measurements/results-fmnist
#
# Restartable: a job is claimed by creating $STATE/claimed/<name> and finished by $STATE/done/<name>; a killed
# job's claim is removed with `rm $STATE/claimed/<name>` (its half run folder too) and the script run again.
# Environment: BUDGET (default 00:00:15:00), LOGS (logs/results-fmnist), JOBS (1), CORES (the cores to pin
# workers to, default "1 0"), ROBUST_BATCHES (test batches of 100 per corruption cell, default 10), ROBUST_MODELS
# (the rows the robustness part tests, default "vir1 no_reservoir vit_small_scratch timm_resnet18"), EXTRA (more
# flags for every fit, e.g. a smoke test: BUDGET=00:00:00:40 EXTRA="--trainer.limit_val_batches 5").
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-00:00:15:00}
LOGS=${LOGS:-logs/results-fmnist}
STATE=${STATE:-$LOGS/.state}
JOBS=${JOBS:-1}
CORES=(${CORES:-1 0})
ROBUST_BATCHES=${ROBUST_BATCHES:-10}
OUT=${OUT:-docs/measurements/results-fmnist}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

C=configs
BASE="-c $C/vir.yaml -c $C/data/fashion_mnist.yaml"
# the from-scratch recipe (strong + DeiT pieces), stepping per batch over the budget with a 30-batch warm-up (the
# slowest rows make ~150 steps in 15 minutes on one thread)
SCRATCH="-c $C/recipe/strong.yaml -c $C/recipe/deit.yaml -c $C/recipe/budget.yaml --model.init_args.scheduler.init_args.warmup 30"
REFERENCE="-c $C/recipe/budget.yaml"  # the paper's recipe (Adam 3e-4, constant): only the stopping rule changes

# name  seeds  pieces (ViR rows draw a new reservoir per seed too)
ROWS=(
  "vir1|1 2 3|$REFERENCE"
  "no_reservoir|1 2 3|-c $C/ablation/no_reservoir.yaml $REFERENCE"
  "vit_small_scratch|1 2 3|-c $C/model/vit_small.yaml $SCRATCH"
  "vit_small_reference|1 2|-c $C/model/vit_small.yaml $REFERENCE"
  "memoryless|1 2|-c $C/ablation/memoryless.yaml $REFERENCE"
  "linear_readout|1 2|-c $C/ablation/linear_readout.yaml $REFERENCE"
  "shuffled_tokens|1 2|-c $C/ablation/shuffled_tokens.yaml $REFERENCE"
  "vit_base1|1|-c $C/model/vit_base.yaml $REFERENCE"
  "timm_resnet18|1|-c $C/model/timm.yaml --model.backbone.init_args.name resnet18 $SCRATCH"
  "vir3|1|-c $C/depth/3.yaml $REFERENCE"
  "vir3_serial|1|-c $C/depth/3.yaml -c $C/model/vir_serial.yaml $REFERENCE"
  "revit_small|1|-c $C/model/vit_small.yaml -c $C/model/revit.yaml $SCRATCH"
  "vitae_v2|1|-c $C/model/vitae_v2.yaml $SCRATCH"
  "mobilevit|1|-c $C/model/mobilevit.yaml $SCRATCH"
  "exmobilevit|1|-c $C/model/mobilevit.yaml -c $C/model/exmobilevit_backbone.yaml -c $C/model/exmobilevit.yaml $SCRATCH"
  "timm_deit_tiny|1|-c $C/model/timm.yaml -c $C/model/timm_deit_tiny.yaml $SCRATCH"
)

# The order jobs run in, so what a short session finishes is the most useful part of the table: the seed-1 rows
# the robustness and quantization parts need, then the second seeds of the claims and ablations (docs/results.md),
# then the variants, then the remaining seeds. Jobs not named here run last, in ROWS order.
ORDER=(vir1-s1 no_reservoir-s1 vit_small_reference-s1 vit_small_scratch-s1 memoryless-s1 linear_readout-s1
  timm_resnet18-s1 vir1-s2 no_reservoir-s2 vit_small_scratch-s2 vit_small_reference-s2 memoryless-s2
  linear_readout-s2 vir3-s1 vit_base1-s1 revit_small-s1 vitae_v2-s1 exmobilevit-s1 timm_deit_tiny-s1 mobilevit-s1
  vir3_serial-s1 shuffled_tokens-s1 shuffled_tokens-s2 vir1-s3 no_reservoir-s3 vit_small_scratch-s3)

row_jobs() {  # name<TAB>command for every (row, seed)
  for seed in 1 2 3; do
    for row in "${ROWS[@]}"; do
      IFS='|' read -r name seeds pieces <<<"$row"
      [[ " $seeds " == *" $seed "* ]] || continue
      extra="--seed_everything $seed"
      case "$name" in vir*|no_reservoir|memoryless|linear_readout|shuffled_tokens) extra="$extra --model.backbone.init_args.seed $seed" ;; esac
      printf '%s-s%s\tlit-vir fit %s %s %s --trainer.max_time %s --trainer.enable_progress_bar false --test_after_fit true --trainer.logger.init_args.save_dir %s --trainer.logger.init_args.name %s --trainer.logger.init_args.version seed%s %s\n' \
        "$name" "$seed" "$BASE" "$pieces" "$extra" "$BUDGET" "$LOGS" "$name" "$seed" "$EXTRA"
    done
  done
}

jobs() {  # name<TAB>command in ORDER, then the rest, then the ViT-Slim chain
  local all named
  all=$(row_jobs)
  for named in "${ORDER[@]}"; do grep -P "^$named\t" <<<"$all" || true; done
  grep -vP "^($(IFS='|'; echo "${ORDER[*]}"))\t" <<<"$all" || true
  printf 'vit_slim-s1\tscripts/results_fmnist.sh slim\n'
}

slim() {
  local teacher="$LOGS/vit_small_scratch/seed1/checkpoints/last.ckpt"
  while [ ! -e "$STATE/done/vit_small_scratch-s1" ]; do sleep 60; done  # waits for its teacher
  lit-vir fit $BASE -c $C/model/vit_small.yaml -c $C/slim/search.yaml -c $C/recipe/budget.yaml \
    --model.init_from "$teacher" --seed_everything 1 --trainer.max_time 00:00:05:00 --trainer.enable_progress_bar false \
    --model.optimizer torch.optim.AdamW --model.optimizer.init_args.lr 5e-4 --model.optimizer.init_args.weight_decay 1e-3 \
    --trainer.logger.init_args.save_dir "$LOGS" --trainer.logger.init_args.name vit_slim_search --trainer.logger.init_args.version seed1
  lit-vir slim "$LOGS/vit_slim_search/seed1/checkpoints/last.ckpt" --budget 0.5 --out "$LOGS/vit_slim_pieces"
  lit-vir fit $BASE -c "$LOGS/vit_slim_pieces/slim-b0.50.yaml" $SCRATCH --seed_everything 1 --trainer.max_time "$BUDGET" \
    --trainer.enable_progress_bar false --test_after_fit true --trainer.logger.init_args.save_dir "$LOGS" \
    --trainer.logger.init_args.name vit_slim --trainer.logger.init_args.version seed1
}

worker() {  # worker INDEX: claim and run jobs in order until none is left
  local core=${CORES[$1]}
  while IFS=$'\t' read -r name command; do
    mkdir -p "$STATE/claimed" "$STATE/done" "$STATE/logs"
    mkdir "$STATE/claimed/$name" 2>/dev/null || continue
    echo "[$(date +%T)] core $core: $name"
    if taskset -c "$core" bash -c "$command" >"$STATE/logs/$name.log" 2>&1; then
      touch "$STATE/done/$name"
    else
      echo "[$(date +%T)] $name FAILED (see $STATE/logs/$name.log)"
    fi
  done < <(jobs)
}

best() { ls "$LOGS/$1/seed1/checkpoints/"epoch*.ckpt | head -1; }

case "${1:?list, train, robustness, perturb or compare}" in
  list) jobs ;;
  train)
    for index in $(seq 0 $((JOBS - 1))); do worker "$index" & done
    wait
    ;;
  slim) slim ;;
  robustness)  # the seed-1 best-validation checkpoints on the corrupted test set (first ROBUST_BATCHES×100 images)
    for name in ${ROBUST_MODELS:-vir1 no_reservoir vit_small_scratch timm_resnet18}; do
      lit-vir test -c "$LOGS/$name/seed1/config.yaml" -c $C/data/corrupted_fashion_mnist.yaml \
        --ckpt_path "$(best "$name")" --trainer.limit_test_batches "$ROBUST_BATCHES" --trainer.enable_progress_bar false \
        --trainer.logger.init_args.save_dir "$LOGS-robustness" --trainer.logger.init_args.name "$name" \
        --trainer.logger.init_args.version seed1
    done
    ;;
  perturb)
    lit-vir perturb --ckpt_path "$(best vir1)" --ckpt_path "$(best vit_small_scratch)" \
      --ckpt_path "$(best vit_small_reference)" -c $C/data/fashion_mnist.yaml --kinds noise \
      --limit_batches "$ROBUST_BATCHES" --output "$OUT/perturb"
    ;;
  compare)  # the main table and figure, the robustness table, and each run's config.yaml/environment.yaml
    lit-vir compare "$LOGS/*/seed*" --output "$OUT" --title "Fashion-MNIST, $BUDGET budget per run, one CPU thread"
    python - "$LOGS-robustness" "$OUT" <<'PYTHON'
import json
import sys
from pathlib import Path

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
summaries = {path.parent.parent.name: json.loads(path.read_text()) for path in sorted(runs.glob("*/seed1/corruption_summary.json"))}
if summaries:
    corruptions = next(iter(summaries.values()))["benchmark_corruptions"]
    lines = ["| row | clean | mean over 15 × 5 cells | " + " | ".join(corruptions) + " |", "|---" * (len(corruptions) + 3) + "|"]
    for name, summary in summaries.items():
        cells = [f"{100 * summary['per_corruption'][c]:.1f}" for c in corruptions]
        clean = "–" if summary["clean_accuracy"] is None else f"{100 * summary['clean_accuracy']:.2f}"
        lines.append(f"| {name} | {clean} | {100 * summary['mean_corruption_accuracy']:.2f} | " + " | ".join(cells) + " |")
    (out / "robustness.md").write_text("\n".join(lines) + "\n")
    (out / "robustness.json").write_text(json.dumps(summaries, indent=2))
    print(f"wrote {out}/robustness.md, robustness.json")
PYTHON
    for run in "$LOGS"/*/seed*; do  # the records of every run, not its checkpoints
      mkdir -p "$OUT/runs/${run#"$LOGS/"}"
      cp "$run"/config.yaml "$run"/environment.yaml "$OUT/runs/${run#"$LOGS/"}"/
    done
    for run in "$LOGS-robustness"/*/seed*; do  # and of the robustness tests, with their per-cell table and heat map
      mkdir -p "$OUT/runs-robustness/${run#"$LOGS-robustness/"}"
      cp "$run"/{config.yaml,environment.yaml,corruption_accuracy.csv,corruption_heatmap.png} \
        "$OUT/runs-robustness/${run#"$LOGS-robustness/"}"/
    done
    if [ -e "$LOGS/vit_slim_pieces/slim.json" ]; then  # lit-vir slim's report and piece (not its checkpoint)
      mkdir -p "$OUT/runs/vit_slim_pieces"
      cp "$LOGS"/vit_slim_pieces/{slim.json,slim-b0.50.yaml} "$OUT/runs/vit_slim_pieces"/
    fi
    ;;
  *) echo "usage: $0 list|train|robustness|perturb|compare" >&2; exit 2 ;;
esac

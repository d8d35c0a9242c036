#!/usr/bin/env bash
# The CPU part of docs/results.md: the same recipe (configs/vir.yaml: Adam 3e-4, no schedule, no
# augmentation) for every model, through scripts/sweep.sh, then one `lit-vir compare` over all runs.
#   OMP_NUM_THREADS=1 scripts/results_cpu.sh digits &          # the two halves side by side,
#   OMP_NUM_THREADS=1 scripts/results_cpu.sh fashion_mnist &   # one core each
#   OMP_NUM_THREADS=1 scripts/results_cpu.sh precision        # bf16's cost in accuracy (quickstart)
#   wait; lit-vir compare "logs/results-cpu/*/version_*" --output docs/measurements/results-cpu
set -euo pipefail
LOGS=${LOGS:-logs/results-cpu}
export LOGS
case "${1:?digits, fashion_mnist or precision}" in
  digits)  # 8×8 images: patch 2 (T = 16 tokens) for every model; 20 epochs
    export DATASETS=digits EPOCHS=20 EXTRA="--model.backbone.init_args.patch_size 2"
    MODELS="vir vir_serial vit_base" DEPTHS="1 3" SEEDS="1 2 3" scripts/sweep.sh
    MODELS="vir" DEPTHS="6 12" SEEDS="1" scripts/sweep.sh
    # the small-ViT anchor with the strong from-scratch recipe
    for seed in 1 2 3; do
      lit-vir fit -c configs/vir.yaml -c configs/data/digits.yaml -c configs/model/vit_small.yaml \
        -c configs/recipe/strong.yaml --model.backbone.init_args.patch_size 2 --seed_everything "$seed" \
        --trainer.max_epochs 20 --trainer.logger.init_args.save_dir "$LOGS" --test_after_fit true
    done
    ;;
  fashion_mnist)  # the full 60k/10k; the reservoir states of the 54k training images cached after epoch 1
    export DATASETS=fashion_mnist EPOCHS=5 \
      EXTRA="--trainer.callbacks+=lit_vir.training.callbacks.state_cache.CacheReservoirStates"
    MODELS="vir" DEPTHS="1" SEEDS="1 2 3" scripts/sweep.sh
    ;;
  precision)  # what bf16 costs in accuracy: the quickstart in float32, bf16-mixed, and bf16 recurrence too
    for seed in 1 2 3; do
      common="-c configs/quickstart.yaml --seed_everything $seed --model.backbone.init_args.seed $seed \
--trainer.logger.init_args.save_dir $LOGS-precision"
      eval "lit-vir fit $common"
      eval "lit-vir fit $common --trainer.precision bf16-mixed"
      eval "lit-vir fit $common --trainer.precision bf16-mixed --model.backbone.init_args.autocast_recurrence true"
    done
    lit-vir compare "$LOGS-precision/*/version_*" --output "$LOGS-precision/comparison"
    ;;
  *) echo "usage: $0 digits|fashion_mnist|precision" >&2; exit 2 ;;
esac

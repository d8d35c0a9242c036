#!/usr/bin/env bash
# The CPU part of docs/results.md: the same recipe (configs/vir.yaml: Adam 3e-4, no schedule, no
# augmentation) for every model, through scripts/sweep.sh; then one `lit-vir compare` over all runs.
# Two streams side by side, one core each:
#   (OMP_NUM_THREADS=1 scripts/results_cpu.sh digits_vir; OMP_NUM_THREADS=1 scripts/results_cpu.sh digits_vit) &
#   (for part in fashion_mnist precision anchor; do OMP_NUM_THREADS=1 scripts/results_cpu.sh $part; done) &
#   wait; lit-vir compare "logs/results-cpu/*/version_*" --output docs/measurements/results-cpu
# (`precision` writes its own comparison to logs/results-cpu-precision/comparison.)
set -euo pipefail
LOGS=${LOGS:-logs/results-cpu}
DIGITS_EPOCHS=12
export LOGS NO_COMPARE=1  # one comparison at the end, over both streams
digits() {  # 8×8 images: patch 2 (T = 16 tokens) for every model
  DATASETS=digits EPOCHS=$DIGITS_EPOCHS EXTRA="--model.backbone.init_args.patch_size 2" scripts/sweep.sh
}
case "${1:?digits_vir, digits_vit, anchor, fashion_mnist or precision}" in
  digits_vir)
    MODELS="vir vir_serial" DEPTHS="1 3" SEEDS="1 2 3" digits
    MODELS="vir" DEPTHS="6 12" SEEDS="1" digits
    ;;
  digits_vit)
    MODELS="vit_base" DEPTHS="1 3" SEEDS="1 2 3" digits
    ;;
  anchor)  # the small ViT with the strong from-scratch recipe, for context (one seed)
    for seed in 1; do
      lit-vir fit -c configs/vir.yaml -c configs/data/digits.yaml -c configs/model/vit_small.yaml \
        -c configs/recipe/strong.yaml --model.backbone.init_args.patch_size 2 --seed_everything "$seed" \
        --trainer.max_epochs "$DIGITS_EPOCHS" --trainer.logger.init_args.save_dir "$LOGS" --test_after_fit true
    done
    ;;
  fashion_mnist)  # the full 60k/10k; the states of the 54k training images cached in epoch 1, reused after
    DATASETS=fashion_mnist EPOCHS=2 MODELS="vir" DEPTHS="1" SEEDS="1 2 3" \
      EXTRA="--trainer.callbacks+=lit_vir.training.callbacks.state_cache.CacheReservoirStates" scripts/sweep.sh
    ;;
  precision)  # what bf16 costs in accuracy: quickstart weights trained in float32, tested in float32 and
    # bf16 (bf16 training is out of reach on a CPU without bf16 matrix units: a bf16 matmul ran 65× slower)
    for seed in 1 2 3; do
      save="$LOGS-precision/seed$seed"
      common="-c configs/quickstart.yaml --seed_everything $seed --model.backbone.init_args.seed $seed \
--trainer.logger.init_args.save_dir $save"
      eval "lit-vir fit $common"
      best=$(ls "$save"/vir-digits/version_0/checkpoints/epoch*.ckpt)
      eval "lit-vir test $common --ckpt_path $best --trainer.precision bf16-mixed"
      eval "lit-vir test $common --ckpt_path $best --trainer.precision bf16-mixed \
--model.backbone.init_args.autocast_recurrence true"
    done
    lit-vir compare "$LOGS-precision/*/*/version_*" --output "$LOGS-precision/comparison"
    ;;
  *) echo "usage: $0 digits_vir|digits_vit|anchor|fashion_mnist|precision" >&2; exit 2 ;;
esac

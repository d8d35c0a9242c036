#!/usr/bin/env bash
# The CPU parts of docs/results.md and docs/benchmarks.md that are not a sweep spec of their own:
#   lit-vir sweep run -c configs/sweep/digits_cpu.yaml          # the digits grid (was `digits_vir`, `digits_vit`)
#   OMP_NUM_THREADS=1 scripts/results_cpu.sh anchor              # the small ViT, strong recipe, for context
#   OMP_NUM_THREADS=1 scripts/results_cpu.sh precision           # what bf16 costs at test time
set -euo pipefail
LOGS=${LOGS:-logs/results-cpu}
DIGITS_EPOCHS=12
case "${1:?anchor or precision}" in
  anchor)  # the small ViT with the strong from-scratch recipe, for context (one seed)
    for seed in 1; do
      lit-vir fit -c configs/vir.yaml -c configs/data/digits.yaml -c configs/model/vit_small.yaml \
        -c configs/recipe/strong.yaml --model.backbone.init_args.patch_size 2 --seed_everything "$seed" \
        --trainer.max_epochs "$DIGITS_EPOCHS" --trainer.logger.init_args.save_dir "$LOGS" --test_after_fit true
    done
    ;;
  precision)  # what bf16 costs in accuracy: quickstart weights trained in float32, tested in float32 and
    # bf16 (bf16 training is out of reach on a CPU without bf16 matrix units: a bf16 matmul ran 65× slower)
    for seed in 1 2 3; do
      save="$LOGS-precision/seed$seed"
      common="-c configs/quickstart.yaml --seed_everything $seed --model.backbone.init_args.seed $seed \
--trainer.logger.init_args.save_dir $save"
      eval "lit-vir fit $common"
      best=$(python -c "import sys; from lit_vir.training.checkpoints import best_checkpoint
print(best_checkpoint(sys.argv[1]))" "$save"/vir-digits/version_0)
      eval "lit-vir test $common --ckpt_path $best --trainer.precision bf16-mixed"
      eval "lit-vir test $common --ckpt_path $best --trainer.precision bf16-mixed \
--model.backbone.init_args.autocast_recurrence true"
    done
    lit-vir compare "$LOGS-precision/*/*/version_*" --output "$LOGS-precision/comparison"
    ;;
  *) echo "usage: $0 anchor|precision (the digits grid: lit-vir sweep run -c configs/sweep/digits_cpu.yaml)" >&2; exit 2 ;;
esac

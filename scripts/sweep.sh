#!/usr/bin/env bash
# The comparison sweep: model × depth × dataset × seed, one `lit-vir fit` per cell, each tested at the
# end (best-validation checkpoint and final weights), then one `lit-vir compare` over all runs.
# No scheduler of its own: run it as is, or send each line of `DRY_RUN=1 scripts/sweep.sh` to SLURM/torchrun.
#
#   scripts/sweep.sh                                      # the default grid below
#   DATASETS="digits" DEPTHS="1 3" SEEDS="1 2 3" EPOCHS=30 scripts/sweep.sh
#   DRY_RUN=1 scripts/sweep.sh > jobs.txt                 # the commands, one per line
#   NO_COMPARE=1 scripts/sweep.sh                         # leave the comparison to a later `lit-vir compare`
set -euo pipefail
DATASETS=${DATASETS:-"digits fashion_mnist"}
MODELS=${MODELS:-"vir vir_serial vit_base"}
DEPTHS=${DEPTHS:-"1 3 6 12"}
SEEDS=${SEEDS:-"1 2 3"}
EPOCHS=${EPOCHS:-10}
EXTRA=${EXTRA:-""}
LOGS=${LOGS:-logs/sweep}

for dataset in $DATASETS; do
  for model in $MODELS; do
    for depth in $DEPTHS; do
      [ "$model" = vir_serial ] && [ "$depth" = 1 ] && continue  # one core: the same model as vir-1
      for seed in $SEEDS; do
        pieces="-c configs/vir.yaml -c configs/data/$dataset.yaml -c configs/depth/$depth.yaml"
        [ "$model" = vir ] || pieces="$pieces -c configs/model/$model.yaml"
        seeds="--seed_everything $seed"
        case "$model" in vir*) seeds="$seeds --model.backbone.init_args.seed $seed" ;; esac  # a new reservoir too
        command="lit-vir fit $pieces $seeds --trainer.max_epochs $EPOCHS \
--trainer.logger.init_args.save_dir $LOGS --test_after_fit true $EXTRA"
        if [ -n "${DRY_RUN:-}" ]; then echo "$command"; else eval "$command"; fi
      done
    done
  done
done
[ -n "${DRY_RUN:-}${NO_COMPARE:-}" ] || lit-vir compare "$LOGS/*/version_*" --output "$LOGS/comparison"

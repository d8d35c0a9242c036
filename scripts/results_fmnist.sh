#!/usr/bin/env bash
# docs/results.md's Fashion-MNIST measurements. The training runs are sweeps (lit-vir sweep is their job queue:
# resumable, one pinned worker per core, nothing run twice):
#   lit-vir sweep run -c configs/sweep/fmnist_lr.yaml        # every row's learning rate, 3-minute trials
#   lit-vir sweep run -c configs/sweep/fmnist_15min.yaml -c configs/sweep/fmnist_table.yaml      # ViR-1 and its
#       ablations: the 15-minute protocol with the tuned rates, 3 seeds
#   lit-vir sweep run -c configs/sweep/fmnist_15min.yaml -c configs/sweep/fmnist_baselines.yaml  # the other rows
#   lit-vir sweep run -c configs/sweep/fmnist_epochs.yaml    # ViR-1, no_reservoir and memoryless for 10 epochs
#   (ViT-Small's seed 1 for the robustness table was trained again: configs/sweep/fmnist_vit_reference_seed1.yaml)
# then, with this script:
#   scripts/results_fmnist.sh tuning       # the learning-rate sweeps' reports and records → $OUT/tuning
#   scripts/results_fmnist.sh robustness   # every seed of ROBUST_ROWS on the corrupted test set (restartable)
#   scripts/results_fmnist.sh compare      # the tables, intervals and figures → docs/measurements/results-fmnist,
#       from the committed run records there (the finished runs of the sweeps on this machine are copied in first)
#   scripts/results_fmnist.sh topology     # docs/topology.md's tables: the topologies (fmnist_topology, with the
#       table's vir1 as cycle_jumps) and the ridge at equal time (fmnist_ridge_equal_time) → docs/measurements/topology
# Environment: ROBUST_BATCHES (test batches of 100 per corruption cell, default 20: the first 2,000 images),
# ROBUST_ROWS (default "vir1 no_reservoir memoryless vit_small_reference"), OUT (docs/measurements/results-fmnist).
set -euo pipefail
cd "$(dirname "$0")/.."
TABLE=${TABLE:-sweeps/fmnist_table/runs}
BASELINES=${BASELINES:-sweeps/fmnist_baselines/runs}
RETRAINED=${RETRAINED:-sweeps/fmnist_vit_reference_seed1/runs}  # a seed trained again when its checkpoint was lost
TUNING=${TUNING:-fmnist_lr fmnist_lr_low}
EPOCHS=${EPOCHS:-sweeps/fmnist_epochs/runs}
TOPOLOGY=${TOPOLOGY:-sweeps/fmnist_topology/runs}
RIDGE=${RIDGE:-sweeps/fmnist_ridge_equal_time/runs}
RIDGE_130S=${RIDGE_130S:-sweeps/fmnist_ridge_equal_time_130s/runs}
ROBUST=${ROBUST:-logs/results-fmnist-robustness}
ROBUST_BATCHES=${ROBUST_BATCHES:-20}
ROBUST_ROWS=${ROBUST_ROWS:-vir1 no_reservoir memoryless vit_small_reference}
OUT=${OUT:-docs/measurements/results-fmnist}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

complete() {  # complete SWEEP_RUNS...: the run folders whose trial finished (a run still training is left out)
  local runs
  for runs in "$@"; do
    [ -d "$runs" ] && grep -l "^state: COMPLETE" "$runs"/*/*/trial.yaml | xargs -r -n1 dirname
  done
  return 0
}

best() {  # the best-validation checkpoint that the run's last.ckpt records (a run interrupted before this commit
  # may also hold a stray epoch000-val_acc0.0000.ckpt: never take the first epoch*.ckpt on disk)
  python -c "import sys; from lit_vir.training.checkpoints import best_checkpoint; print(best_checkpoint(sys.argv[1]))" "$1"
}

records() {  # records FROM TO: each run's config, environment, trial record and per-image predictions, no checkpoint
  local run target
  for run in "$1"/*/*; do
    [ -f "$run/config.yaml" ] || continue
    grep -q "^state: RUNNING" "$run/trial.yaml" 2>/dev/null && continue  # still training: its files are not final
    target="$2/${run#"$1/"}"
    mkdir -p "$target"
    for file in config.yaml environment.yaml trial.yaml test_predictions.npz corruption_accuracy.csv \
      corruption_summary.json; do
      if [ -f "$run/$file" ]; then cp "$run/$file" "$target/"; fi
    done
    cp "$run"/events.out.tfevents.* "$target/" 2>/dev/null || true  # the logged scalars: compare reads them back
  done
}

case "${1:?tuning, robustness, compare or topology}" in
  tuning)  # each learning-rate sweep's report (best trials, figures) and its runs' records
    for name in $TUNING; do
      lit-vir sweep report -c "sweeps/$name/sweep.yaml"
      mkdir -p "$OUT/tuning/$name"
      cp sweeps/"$name"/report/*.md sweeps/"$name"/report/*.png "$OUT/tuning/$name/"
      records "sweeps/$name/runs" "$OUT/tuning/$name/runs"
    done
    ;;
  robustness)  # a seed with its corruption_summary.json is done; a half-written one is tested again; run it again
    # once more runs have finished
    for row in $ROBUST_ROWS; do
      for run in "$TABLE/$row"/t* "$BASELINES/$row"/t* "$RETRAINED/$row"/t*; do  # the first run of a seed is tested
        [ -f "$run/trial.yaml" ] || continue  # no such row in that sweep (yet)
        name=$(basename "$run")
        seed=${name##*-s}
        target="$ROBUST/$row/seed$seed"
        [ -f "$target/corruption_summary.json" ] && continue
        grep -q "^state: COMPLETE" "$run/trial.yaml" || continue  # a run still training (or failed) is left
        rm -rf "$target"
        lit-vir test -c "$run/config.yaml" -c configs/data/corrupted_fashion_mnist.yaml --ckpt_path "$(best "$run")" \
          --trainer.limit_test_batches "$ROBUST_BATCHES" --trainer.enable_progress_bar false \
          --trainer.logger.init_args.save_dir "$ROBUST" --trainer.logger.init_args.name "$row" \
          --trainer.logger.init_args.version "seed$seed"
      done
    done
    ;;
  compare)  # the finished runs of the sweeps on this machine join the committed records first; the tables are
    # then made from the records alone, so any clone rebuilds them without the sweeps' folders (no checkpoints)
    for sweep in "$TABLE" "$BASELINES"; do
      if [ -d "$sweep" ]; then records "$sweep" "$OUT/runs"; fi
    done
    mapfile -t finished < <(complete "$OUT/runs")
    lit-vir compare "${finished[@]}" --baseline ViR-1 --output "$OUT" \
      --title "Fashion-MNIST, 15-minute budget per run on one pinned CPU thread, tuned learning rates"
    if [ -d "$EPOCHS" ]; then records "$EPOCHS" "$OUT/epochs/runs"; fi
    mapfile -t finished < <(complete "$OUT/epochs/runs")
    if [ "${#finished[@]}" -gt 0 ]; then
      lit-vir compare "${finished[@]}" --baseline ViR-1 --output "$OUT/epochs" \
        --title "Fashion-MNIST, the same 10 epochs for each model, one pinned CPU thread"
    fi
    if [ -d "$ROBUST" ]; then records "$ROBUST" "$OUT/robustness/runs"; fi
    if [ -d "$OUT/robustness/runs" ]; then
      lit-vir compare "$OUT/robustness/runs/*/*" --corruptions --baseline ViR-1 --output "$OUT/robustness" \
        --title "Fashion-MNIST-C (generated): 15 corruptions × 5 severities, first $((ROBUST_BATCHES * 100)) test images"
    fi
    ;;
  topology)  # each topology against the reference (the table's vir1 runs, whose records are under $OUT/runs)
    mapfile -t finished < <(complete "$TABLE" "$TOPOLOGY" | grep -v -e /no_reservoir/ -e /memoryless/)
    lit-vir compare "${finished[@]}" --baseline ViR-1 --output docs/measurements/topology/accuracy-fmnist \
      --title "Fashion-MNIST, ViR-1 with each reservoir topology, 15-minute budget on one pinned CPU thread"
    records "$TOPOLOGY" docs/measurements/topology/accuracy-fmnist/runs
    mapfile -t finished < <(complete "$RIDGE" "$RIDGE_130S")
    if [ "${#finished[@]}" -gt 0 ]; then
      lit-vir compare "${finished[@]}" --baseline "ViR-1 ridge" --output docs/measurements/topology/ridge-equal-time \
        --title "Fashion-MNIST, the closed-form ridge readout against ViR-1 trained by gradient for 130 s and 4 minutes"
      records "$RIDGE" docs/measurements/topology/ridge-equal-time/runs
      [ -d "$RIDGE_130S" ] && records "$RIDGE_130S" docs/measurements/topology/ridge-equal-time/runs
    fi
    ;;
  *) echo "usage: $0 tuning|robustness|compare|topology (the training runs are sweeps: see the top of this file)" >&2; exit 2 ;;
esac

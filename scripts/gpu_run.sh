#!/usr/bin/env bash
# The GPU rows of docs/results.md and docs/benchmarks.md, in one run of about 8 minutes on a machine with one GPU:
#   1. lit-vir bench on the GPU, fp32 and bf16: ViR-1/3/12 against ViT-Base-1/3/12 at the paper's batch size (100),
#      CIFAR-10 shapes;
#   2. ViR-1, no_reservoir and ViT-Small (reference recipe, tuned learning rates) trained on Fashion-MNIST for
#      EPOCHS epochs, three runs sharing the GPU (configs/sweep/gpu_fmnist.yaml: 3 local workers, 1/3 GPU each),
#      each tested at the end; then lit-vir compare over them.
# Everything it makes lands in $OUT: bench-gpu.json, compare/ (tables, figure), runs.tar.gz (each run's records and
# per-image predictions, no checkpoints), gpu_run.log.
#
#   TINY=1 OUT=/tmp/gpu-dry scripts/gpu_run.sh      # the same steps on the CPU with tiny settings (tested first)
#   scripts/gpu_prepare.sh                          # here: the wheels the GPU image lacks, and the data
#   (on the GPU machine, .whl and data/FashionMNIST carried) OUT=$OUT scripts/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
TINY=${TINY:-0}
EPOCHS=${EPOCHS:-10}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_run.log") 2>&1
export PYTHONUNBUFFERED=1

PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! $PYTHON -c "import jsonargparse, omegaconf, optuna, optuna_integration, submitit" 2> /dev/null; then
  # the GPU image has torch and Lightning, not these: the wheels scripts/gpu_prepare.sh downloaded
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
LIT="$PYTHON -m lit_vir"
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if [ "$TINY" = 1 ]; then
  device=cpu
  bench=(--models vir-1 vit_base-1 --data digits --repeats 2 --warmup 1 --batch_size 8)  # 8×8 images: small
  train=(--launcher.kind inline --resources.gpus 0 --overrides "{trainer.max_epochs: 1, trainer.accelerator: cpu,
    trainer.limit_train_batches: 3, trainer.limit_val_batches: 2, trainer.limit_test_batches: 2, test_after_fit: true,
    trainer.enable_progress_bar: false, data.init_args.num_workers: 0}")
else
  device=cuda
  bench=(--models vir-1 vir-3 vir-12 vit_base-1 vit_base-3 vit_base-12 --data cifar10 --batch_size 100 --repeats 20
    --warmup 5)
  train=(--overrides "{trainer.max_epochs: $EPOCHS}")
fi

echo "== 1. bench ($device)"
$LIT bench "${bench[@]}" --precision 32-true bf16-mixed --device "$device" --output "$OUT/bench-gpu.json"

echo "== 2. Fashion-MNIST, ${EPOCHS} epochs, three runs sharing the device"
$LIT sweep run -c configs/sweep/gpu_fmnist.yaml --out "$OUT/sweeps" "${train[@]}"
$LIT compare "$OUT/sweeps/gpu_fmnist/runs/*/*" --baseline ViR-1 --output "$OUT/compare" \
  --title "Fashion-MNIST, the same epochs, three runs sharing one GPU"
tar -czf "$OUT/runs.tar.gz" --exclude "*.ckpt" -C "$OUT/sweeps/gpu_fmnist" runs sweep.yaml
rm -rf "$OUT/sweeps"  # its checkpoints are not brought back
echo "== done: $(ls "$OUT")"

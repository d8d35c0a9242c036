#!/usr/bin/env bash
# What scripts/gpu_run.sh needs on a GPU machine that reaches nothing outside it, prepared here: the Python packages
# its image lacks (it has torch, Lightning, timm, TensorBoard, rich, scikit-learn; not jsonargparse, OmegaConf,
# Optuna or submitit) as wheels for its Python 3.12 in .whl/, and Fashion-MNIST's files in data/FashionMNIST/raw
# (from Debian's dataset-fashion-mnist); both git-ignored, carried with the run: `carry: [".whl", "data/FashionMNIST"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
mkdir -p .whl
WHEELS=(
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
  omegaconf==2.4.0
  optuna==5.1.0 optuna-integration==5.0.0 alembic==1.20.1 Mako==1.4.3 colorlog==6.12.0 SQLAlchemy==2.1.9 greenlet
  submitit==1.5.4
)
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$wheel"
done
ls .whl
mkdir -p data/FashionMNIST/raw
cp -n /usr/share/datasets/fashion-mnist/*.gz data/FashionMNIST/raw/
ls data/FashionMNIST/raw

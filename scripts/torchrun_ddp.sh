#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun: one process per GPU, Lightning reads torchrun's
# environment (TorchElasticEnvironment) and does not spawn processes itself.
#
#   one machine, 4 GPUs:   NNODES=1 GPUS=4 scripts/torchrun_ddp.sh -c configs/vir.yaml -c configs/data/cifar10.yaml
#   two machines:          on each:  NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node 0's address> GPUS=8 scripts/torchrun_ddp.sh ...
#   CPU smoke test:        NNODES=1 GPUS=2 ACCELERATOR=cpu scripts/torchrun_ddp.sh -c configs/quickstart.yaml
set -euo pipefail
NNODES=${NNODES:-1}
GPUS=${GPUS:-1}
torchrun \
  --nnodes "$NNODES" --nproc_per_node "$GPUS" \
  --node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  -m lit_vir fit "$@" \
  --trainer.strategy ddp --trainer.accelerator "${ACCELERATOR:-gpu}" \
  --trainer.devices "$GPUS" --trainer.num_nodes "$NNODES"

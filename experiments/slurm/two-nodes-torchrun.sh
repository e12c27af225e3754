#!/bin/bash
# Two nodes without SLURM: run this on each node with NODE_RANK=0 and NODE_RANK=1 and
# MASTER_ADDR set to node 0's address (README.md, "Several nodes and SLURM"). The run folder
# (--trainer.default_root_dir) must be on a file system both nodes see: rank 0 writes the
# checkpoints and the data index there, and a resumed run reads them from every node.
#
#   NODE_RANK=0 MASTER_ADDR=10.0.0.1 experiments/slurm/two-nodes-torchrun.sh
#   NODE_RANK=1 MASTER_ADDR=10.0.0.1 experiments/slurm/two-nodes-torchrun.sh
set -euo pipefail
GPUS=${GPUS:-4}
torchrun --nnodes 2 --nproc-per-node "$GPUS" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "${MASTER_PORT:-29500}" \
    "$(command -v escx)" fit --config experiments/esc.yaml \
    --trainer.num_nodes 2 --trainer.devices "$GPUS" --trainer.strategy ddp \
    --trainer.default_root_dir /shared/runs/esc-base \
    --data.train /shared/corpora/train --data.val /shared/corpora/val \
    --ckpt_path last "$@"

#!/usr/bin/env bash
# Multi-process / multi-node DDP (or FSDP) with torchrun; every rank runs the same CLI command,
# so every rank gets the same config from the command line.
#
#   scripts/torchrun.sh fit --config experiments/vae_mnist.yaml                      # 1 node, all GPUs
#   NPROC=2 scripts/torchrun.sh fit --config X.yaml --trainer.accelerator=cpu        # 2 CPU processes (gloo)
#   scripts/torchrun.sh fit --config X.yaml --ckpt_path last                         # resume the same run
#   # 2 nodes: run on each node with the same RUN_ID and MASTER_ADDR, NODE_RANK=0 / 1:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 RUN_ID=exp1 scripts/torchrun.sh fit --config X.yaml
#
# Environment: NPROC (processes per node; default: GPUs, else 2), NNODES (1), NODE_RANK (0),
# MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), STRATEGY (ddp; fsdp works too),
# RUN_ID (the run dir name shared by all ranks and all nodes; default: a new one per launch;
# required with NNODES > 1; keep it to resume a run with --ckpt_path last).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python)"
gpus="$("$python" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)"
NPROC="${NPROC:-$([[ "$gpus" -gt 0 ]] && echo "$gpus" || echo 2)}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
if [[ "$NNODES" -gt 1 && -z "${RUN_ID:-}" ]]; then
  echo "torchrun.sh: set RUN_ID (the same on every node) so all ranks write one run dir" >&2
  exit 2
fi
# every rank must pick the same run dir: lightning_gen.runs.layout reads this variable (lightning_gen.runs.env.RUN_ID)
export LIGHTNING_GEN_RUN_ID="${RUN_ID:-$(date +%Y%m%d-%H%M%S)-torchrun}"
# this node's resume command, for the paragraph a rank prints when a node of the run is lost
args=()
skip=0
for arg in "$@"; do
  if [[ "$skip" == 1 ]]; then skip=0; continue; fi
  case "$arg" in
    --ckpt_path) skip=1 ;;
    --ckpt_path=*) ;;
    *) args+=("$arg") ;;
  esac
done
relaunch="NNODES=$NNODES NODE_RANK=$NODE_RANK NPROC=$NPROC MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT"
relaunch+=" RUN_ID=$LIGHTNING_GEN_RUN_ID${STRATEGY:+ STRATEGY=$STRATEGY} $0$(printf ' %q' "${args[@]}") --ckpt_path last"
export LIGHTNING_GEN_RELAUNCH="$relaunch"
exec "$python" -m lightning_gen.cli.torchrun \
  --nproc-per-node "$NPROC" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
  -m lightning_gen "$@" \
  --trainer.devices "$NPROC" --trainer.num_nodes "$NNODES" --trainer.strategy "${STRATEGY:-ddp}"

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
# required with NNODES > 1; keep it to resume a run with --ckpt_path last),
# MAX_RESTARTS (3 with NNODES > 1, else 0): elastic restarts. When a node is lost, the others restart their
#   processes and wait for it to rejoin: start it again with its own command and the run continues from
#   last.ckpt. Every start then resumes (--ckpt_path last is added unless given). Not for NODE_RANK 0, which keeps
#   the rendezvous: when it is lost, the others stop; relaunch every node. 0: torchrun's static rendezvous (rank 0
#   on NODE_RANK 0), and a lost node stops the run.
# REJOIN_TIMEOUT_S (600): how long the nodes wait for each other, at the start and for a lost node.
# LOCAL_ADDR (host name): the address the other nodes reach this node at (torchrun --local-addr), with restarts.
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
given=""  # the settings of this script given in the environment, for the relaunch command
for name in MAX_RESTARTS REJOIN_TIMEOUT_S LOCAL_ADDR; do [[ -n "${!name:-}" ]] && given+=" $name=${!name}"; done
MAX_RESTARTS="${MAX_RESTARTS:-$([[ "$NNODES" -gt 1 ]] && echo 3 || echo 0)}"
REJOIN_TIMEOUT_S="${REJOIN_TIMEOUT_S:-600}"
if [[ "$NNODES" -gt 1 && -z "${RUN_ID:-}" ]]; then
  echo "torchrun.sh: set RUN_ID (the same on every node) so all ranks write one run dir" >&2
  exit 2
fi
# every rank must pick the same run dir: lightning_gen.runs.layout reads this variable (lightning_gen.runs.env.RUN_ID)
export LIGHTNING_GEN_RUN_ID="${RUN_ID:-$(date +%Y%m%d-%H%M%S)-torchrun}"
# this node's resume command, for the paragraph a rank prints when a node of the run is lost
args=()
skip=0
resume=(--ckpt_path last)  # added with restarts on, unless a --ckpt_path is given
for arg in "$@"; do
  if [[ "$skip" == 1 ]]; then skip=0; continue; fi
  case "$arg" in
    --ckpt_path) skip=1; resume=() ;;
    --ckpt_path=*) resume=() ;;
    *) args+=("$arg") ;;
  esac
done
relaunch="NNODES=$NNODES NODE_RANK=$NODE_RANK NPROC=$NPROC MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT$given"
relaunch+=" RUN_ID=$LIGHTNING_GEN_RUN_ID${STRATEGY:+ STRATEGY=$STRATEGY} $0$(printf ' %q' "${args[@]}") --ckpt_path last"
export LIGHTNING_GEN_RELAUNCH="$relaunch"
if [[ "$MAX_RESTARTS" -gt 0 ]]; then
  # c10d rendezvous: its store lives in the torchrun of NODE_RANK 0 (is_host), on MASTER_ADDR:MASTER_PORT; a lost
  # node's replacement joins a new round. The store shared with the workers stays off: torch 2.14 keeps the first
  # round's worker-store address, so a replacement node waits for a key no one writes (60 s) and the round fails.
  export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 LIGHTNING_GEN_REJOIN_TIMEOUT_S="$REJOIN_TIMEOUT_S"
  launch=(--rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$LIGHTNING_GEN_RUN_ID"
    --rdzv-conf "join_timeout=$REJOIN_TIMEOUT_S,is_host=$([[ "$NODE_RANK" == 0 ]] && echo 1 || echo 0)"
    --max-restarts "$MAX_RESTARTS" ${LOCAL_ADDR:+--local-addr "$LOCAL_ADDR"})
else
  launch=(--node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT")
  resume=()
fi
exec "$python" -m lightning_gen.cli.torchrun \
  --nproc-per-node "$NPROC" --nnodes "$NNODES" "${launch[@]}" \
  -m lightning_gen "$@" "${resume[@]}" \
  --trainer.devices "$NPROC" --trainer.num_nodes "$NNODES" --trainer.strategy "${STRATEGY:-ddp}"

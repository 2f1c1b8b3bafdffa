#!/usr/bin/env bash
# Stage 3 (adapt): train the metric depth head on MVSEC or DENSE from the stage-2 foundation.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./train.sh [--set key=value ...] [--resume]

  ENCODER      vitt | vits | vitb | vitl            (default vits)
  HEAD_SIZE    DPT head size, independent of ENCODER (default: the one DA-V2 pairs with ENCODER)
  DATASET      mvsec | dense                        (default mvsec)
  FOUNDATION   stage-2 output                       (default runs/fuse_\$ENCODER/model.pth)
  TRAIN_SPLIT  VAL_SPLIT  split lists               (default: from configs/adapt/\$DATASET.yaml)
  OUT          output folder                        (default runs/adapt_\$DATASET_\$ENCODER)
  CONFIG       YAML config                          (default: the repository's configs/adapt/\$DATASET.yaml)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT     distributed launch (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.
Writes OUT/model.pth and OUT/best.pth (lowest validation Abs.Rel), used by run.sh and eval.sh.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
ENCODER=${ENCODER:-vits}
DATASET=${DATASET:-mvsec}
source "$here/scripts/stage_config.sh"
CONFIG=${CONFIG:-$(stage_config adapt "$DATASET")}
args=(--config "$CONFIG" --set "model.encoder=$ENCODER" --set "data.dataset=$DATASET"
      --set "init.foundation=${FOUNDATION:-runs/fuse_${ENCODER}/model.pth}"
      --set "run.output_dir=${OUT:-runs/adapt_${DATASET}_${ENCODER}}")
[[ -n "${HEAD_SIZE:-}" ]] && args+=(--set "model.head_size=$HEAD_SIZE")
[[ -n "${TRAIN_SPLIT:-}" ]] && args+=(--set "data.train_split=$TRAIN_SPLIT")
[[ -n "${VAL_SPLIT:-}" ]] && args+=(--set "data.val_split=$VAL_SPLIT")
exec "$here/scripts/launch.sh" adapt "${args[@]}" "$@"

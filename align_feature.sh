#!/usr/bin/env bash
# Stage 1 (align): adapt a LoRA event encoder to the DA-V2 image teacher on image/event pairs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./align_feature.sh [--set key=value ...] [--resume]

  ENCODER      vitt | vits | vitb | vitl          (default vits)
  DATASET      eventscape | dense | mvsec         (default eventscape)
  DAV2         DA-V2 checkpoint (teacher + init)  (default checkpoints/depth_anything_v2_\$ENCODER.pth)
  TRAIN_SPLIT  VAL_SPLIT  split lists             (default: from configs/align/\$DATASET.yaml)
  OUT          output folder                      (default runs/align_\$ENCODER)
  CONFIG       YAML config                        (default: the repository's configs/align/\$DATASET.yaml)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT   distributed launch (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.
Writes OUT/model.pth, the input of fuse_feature.sh.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
ENCODER=${ENCODER:-vits}
DATASET=${DATASET:-eventscape}
source "$here/scripts/stage_config.sh"
CONFIG=${CONFIG:-$(stage_config align "$DATASET")}
args=(--config "$CONFIG" --set "model.encoder=$ENCODER" --set "data.dataset=$DATASET"
      --set "init.depth_anything=${DAV2:-checkpoints/depth_anything_v2_${ENCODER}.pth}"
      --set "run.output_dir=${OUT:-runs/align_${ENCODER}}")
[[ -n "${TRAIN_SPLIT:-}" ]] && args+=(--set "data.train_split=$TRAIN_SPLIT")
[[ -n "${VAL_SPLIT:-}" ]] && args+=(--set "data.val_split=$VAL_SPLIT")
exec "$here/scripts/launch.sh" align "${args[@]}" "$@"

#!/usr/bin/env bash
# Stage 2 (fuse): train FreDFuse on degraded image + events against the clean-image DA-V2 teacher.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./fuse_feature.sh [--set key=value ...] [--resume]

  ENCODER        vitt | vits | vitb | vitl          (default vits)
  DATASET        eventscape | dense | mvsec         (default eventscape)
  DAV2           DA-V2 checkpoint                   (default checkpoints/depth_anything_v2_\$ENCODER.pth)
  EVENT_ENCODER  stage-1 output                     (default runs/align_\$ENCODER/model.pth)
  TRAIN_SPLIT  VAL_SPLIT  split lists               (default: from the config)
  OUT            output folder                      (default runs/fuse_\$ENCODER)
  CONFIG         YAML config                        (default: the repository's configs/fuse/\$DATASET.yaml)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT     distributed launch (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.
Writes OUT/model.pth, the "foundation" checkpoint train.sh starts from.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
ENCODER=${ENCODER:-vits}
DATASET=${DATASET:-eventscape}
source "$here/scripts/stage_config.sh"
CONFIG=${CONFIG:-$(stage_config fuse "$DATASET")}
args=(--config "$CONFIG" --set "model.encoder=$ENCODER" --set "data.dataset=$DATASET"
      --set "init.depth_anything=${DAV2:-checkpoints/depth_anything_v2_${ENCODER}.pth}"
      --set "init.event_encoder=${EVENT_ENCODER:-runs/align_${ENCODER}/model.pth}"
      --set "run.output_dir=${OUT:-runs/fuse_${ENCODER}}")
[[ -n "${TRAIN_SPLIT:-}" ]] && args+=(--set "data.train_split=$TRAIN_SPLIT")
[[ -n "${VAL_SPLIT:-}" ]] && args+=(--set "data.val_split=$VAL_SPLIT")
exec "$here/scripts/launch.sh" fuse "${args[@]}" "$@"

#!/usr/bin/env bash
# AIMDepth: prepare 5-bin MVSEC / DENSE samples, train, predict and score.
# A thin wrapper over the real preparation script and `python -m fuse aimdepth | infer | eval` (docs/aimdepth.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./aimdepth.sh MODE [options for the python command]

Modes:
  prepare  MVSEC hdf5 recordings -> 5-bin processed samples (scripts/process_mvsec_hdf5.py --numbins 5)
  train    train AIMDepth (python -m fuse aimdepth)              writes RUN/model.pth (+ best.pth with a VAL_SPLIT)
  infer    depth maps, colored PNGs and panels of SPLIT (run.sh)  -> OUT
  eval     score CHECKPOINT on SPLIT with the E2Depth per-frame protocol (eval.sh) -> OUT

  DATASET      mvsec | dense                                       (default mvsec)
  ROOT         folder of the MVSEC recordings (prepare)            (default data/mvsec_raw)
  SEQUENCES    recordings to prepare                               (default "outdoor_day1 outdoor_day2 outdoor_night1")
  PREPARED     processed 5-bin folder                              (default data/\${DATASET}5)
  SIZE         paper | tiny                                        (default paper)
  CONFIG       training config                                     (default configs/aimdepth/\$DATASET.yaml)
  TRAIN_SPLIT  VAL_SPLIT  split lists (train)                      (default: from CONFIG)
  RUN          training output folder                              (default runs/aimdepth/\${DATASET}_\$SIZE)
  CHECKPOINT   checkpoint to predict with (infer, eval)            (default \$RUN/model.pth)
  SPLIT        processed split list to predict / score             (default \$PREPARED/outdoor_day1.txt)
  OUT          output folder (infer, eval)                         (default outputs/aimdepth/<split name>)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT   distributed training (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.

Examples:
  ROOT=/data/mvsec ./aimdepth.sh prepare
  SIZE=tiny ./aimdepth.sh train --set optim.epochs=5
  SPLIT=data/mvsec5/outdoor_night1.txt ./aimdepth.sh eval
USAGE
}
mode="${1:-}"
[[ "$mode" == "-h" || "$mode" == "--help" ]] && { usage; exit 0; }
[[ -n "$mode" ]] || { usage >&2; exit 2; }
shift

DATASET=${DATASET:-mvsec}
SIZE=${SIZE:-paper}
PREPARED=${PREPARED:-data/${DATASET}5}
RUN=${RUN:-runs/aimdepth/${DATASET}_$SIZE}
CHECKPOINT=${CHECKPOINT:-$RUN/model.pth}
SPLIT=${SPLIT:-$PREPARED/outdoor_day1.txt}
OUT=${OUT:-outputs/aimdepth/$(basename "$SPLIT" .txt)}
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "$here/.venv/bin/python" ]] && PYTHON="$here/.venv/bin/python"
fi
export PYTHON

case "$mode" in
  prepare)
    # shellcheck disable=SC2086  # SEQUENCES is a list of names
    exec "$PYTHON" "$here/scripts/process_mvsec_hdf5.py" --root "${ROOT:-data/mvsec_raw}" --out "$PREPARED" \
      --numbins 5 ${SEQUENCES:-outdoor_day1 outdoor_day2 outdoor_night1} "$@" ;;
  train)
    args=(--config "${CONFIG:-$here/configs/aimdepth/$DATASET.yaml}" --set "aimdepth.size=$SIZE"
          --set "run.output_dir=$RUN")
    [[ -n "${TRAIN_SPLIT:-}" ]] && args+=(--set "data.train_split=$TRAIN_SPLIT")
    [[ -n "${VAL_SPLIT:-}" ]] && args+=(--set "data.val_split=$VAL_SPLIT")
    exec "$here/scripts/launch.sh" aimdepth "${args[@]}" "$@" ;;
  infer) exec "$here/run.sh" -c "$CHECKPOINT" -s "$SPLIT" -o "$OUT" "$@" ;;
  eval) CHECKPOINT="$CHECKPOINT" SPLIT="$SPLIT" PRED="$OUT/predictions" OUT="$OUT" DATASET="$DATASET" \
          exec "$here/eval.sh" "$@" ;;
  *) echo "error: unknown mode '$mode'" >&2; usage >&2; exit 2 ;;
esac

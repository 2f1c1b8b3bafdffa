#!/usr/bin/env bash
# DERD-Net on MVSEC indoor_flying: prepare -> infer -> eval, and training one model of a fold.
# A thin wrapper over `python -m fuse derdnet-prepare | derdnet-infer | eval | derdnet` (docs/derdnet.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./derdnet.sh MODE [options for the python command]

Modes:
  prepare  DSIs of RECORDING -> the prepared folder PREPARED (restartable)
  infer    sparse depth of PREPARED with CHECKPOINTS (or ARGMAX=1) -> OUT
  eval     score OUT: derdnet_points (the paper's table) and e2depth_points
  all      prepare, infer, eval one sequence (default: its fold's released even/odd pair)
  train    train the SPLIT model of fold FOLD (the other two sequences; validated on indoor_flying\$FOLD)

  MVSEC          folder of indoor_flying{1,2,3}_{data,gt}.hdf5 and camchain-imucam-indoor_flying.yaml
                 (default data/mvsec)
  SEQUENCE       indoor_flying1 | indoor_flying2 | indoor_flying3       (default indoor_flying1)
  RECORDING      DIR/NAME of the recording                               (default \$MVSEC/\$SEQUENCE)
  STEREO         1 (default) | 0: monocular DSIs of the left camera
  FILTER         denser (default) | orig: pixel selection, spec §3
  PREPARED_ROOT  where prepared folders go                               (default prepared/derdnet)
  PREPARED       prepared folder (default \$PREPARED_ROOT/\${SEQUENCE}_{stereo|mono}_\$FILTER)
  VARIANT        stereo (default) | multipixel
  MODELS         the authors' released models/ folder (github.com/tub-rip/DERD-Net)  (default models/derdnet)
  CHECKPOINTS    space-separated checkpoints to average
                 (default \$MODELS/mvsec/\$SEQUENCE/\${SEQUENCE}_\${VARIANT}_{even,odd}_model.pth: the released pair)
  ARGMAX         1: the arg-max baseline instead of networks
  OUT            infer / eval folder        (default outputs/derdnet/\$(basename \$PREPARED)_{\$VARIANT|argmax})
  FOLD           1 | 2 | 3 (train)          (default: the number of \$SEQUENCE)
  SPLIT          even | odd (train)         (default even)
  RUN            training output folder     (default runs/derdnet/mvsec_\${VARIANT}_fold\${FOLD}_\$SPLIT)
  CONFIG         training config            (default configs/derdnet/mvsec_\$VARIANT.yaml)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT   distributed training (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.

Examples:
  MVSEC=/data/mvsec SEQUENCE=indoor_flying2 ./derdnet.sh all
  FOLD=1 SPLIT=odd ./derdnet.sh train
  CHECKPOINTS="runs/derdnet/mvsec_stereo_fold1_even/model.pth runs/derdnet/mvsec_stereo_fold1_odd/model.pth" \\
    OUT=outputs/derdnet/ours_flying1 ./derdnet.sh infer && OUT=outputs/derdnet/ours_flying1 ./derdnet.sh eval
USAGE
}
mode="${1:-}"
[[ "$mode" == "-h" || "$mode" == "--help" ]] && { usage; exit 0; }
[[ -n "$mode" ]] || { usage >&2; exit 2; }
shift

SEQUENCE=${SEQUENCE:-indoor_flying1}
MVSEC=${MVSEC:-data/mvsec}
RECORDING=${RECORDING:-$MVSEC/$SEQUENCE}
STEREO=${STEREO:-1}
FILTER=${FILTER:-denser}
VARIANT=${VARIANT:-stereo}
PREPARED_ROOT=${PREPARED_ROOT:-prepared/derdnet}
cameras=$([[ "$STEREO" == 1 ]] && echo stereo || echo mono)
prepared_of() { echo "$PREPARED_ROOT/${1}_${cameras}_$FILTER"; }
PREPARED=${PREPARED:-$(prepared_of "$SEQUENCE")}
MODELS=${MODELS:-models/derdnet}
OUT=${OUT:-outputs/derdnet/$(basename "$PREPARED")_$([[ "${ARGMAX:-0}" == 1 ]] && echo argmax || echo "$VARIANT")}

run_fuse() { GPUS=1 NNODES=1 "$here/scripts/launch.sh" "$@"; }  # one process: these commands are not distributed

prepare() {
  local mono=()
  [[ "$STEREO" == 1 ]] || mono=(--mono)
  run_fuse derdnet-prepare --recording "$RECORDING" --out "$PREPARED" --filter "$FILTER" ${mono[@]+"${mono[@]}"} "$@"
}

infer() {
  local what=()
  if [[ "${ARGMAX:-0}" == 1 ]]; then
    what=(--argmax)
  else
    local released="$MODELS/mvsec/$SEQUENCE/${SEQUENCE}_$VARIANT"
    local checkpoints=${CHECKPOINTS:-"${released}_even_model.pth ${released}_odd_model.pth"}
    for checkpoint in $checkpoints; do what+=(--checkpoint "$checkpoint"); done
  fi
  run_fuse derdnet-infer --prepared "$PREPARED" "${what[@]}" --out "$OUT" "$@"
}

evaluate() {
  run_fuse eval --protocol derdnet_points --pred "$OUT/depth" --target "$OUT/gt" --dataset mvsec \
    --json "$OUT/metrics.json" --markdown "$OUT/metrics.md" "$@"
  run_fuse eval --protocol e2depth_points --pred "$OUT/depth" --target "$OUT/gt" --dataset mvsec \
    --json "$OUT/metrics_e2depth.json" --markdown "$OUT/metrics_e2depth.md" --no-progress
}

train() {
  local fold=${FOLD:-${SEQUENCE#indoor_flying}} split=${SPLIT:-even} others=() folders
  [[ "$fold" =~ ^[123]$ ]] || { echo "error: FOLD must be 1, 2 or 3, got '$fold'" >&2; exit 2; }
  for k in 1 2 3; do [[ "$k" == "$fold" ]] || others+=("$(prepared_of "indoor_flying$k")"); done
  folders=$(IFS=,; echo "${others[*]}")
  exec "$here/scripts/launch.sh" derdnet --config "${CONFIG:-$here/configs/derdnet/mvsec_$VARIANT.yaml}" \
    --set "derdnet.train=$folders" --set "derdnet.val=$(prepared_of "indoor_flying$fold")" \
    --set "derdnet.split=$split" --set "derdnet.filter=$FILTER" \
    --set "run.output_dir=${RUN:-runs/derdnet/mvsec_${VARIANT}_fold${fold}_$split}" "$@"
}

case "$mode" in
  prepare) prepare "$@" ;;
  infer) infer "$@" ;;
  eval) evaluate "$@" ;;
  all) prepare; infer; evaluate ;;
  train) train "$@" ;;
  *) echo "error: unknown mode '$mode'" >&2; usage >&2; exit 2 ;;
esac

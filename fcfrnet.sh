#!/usr/bin/env bash
# FCFR-Net on KITTI depth completion: train STD, write its coarse maps, train FCFRNet on them, score, convert.
# A thin wrapper over `python -m fuse std | fcfrnet-predict | fcfrnet | eval | fcfrnet-convert` (docs/fcfrnet.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./fcfrnet.sh MODE [options for the python command]

Modes:
  train-std  train STD (stage 1) on the LiDAR points                      (python -m fuse std)
  coarse     STD_CHECKPOINT's coarse maps of each split in SPLITS -> 16-bit PNGs in KITTI, folder COARSE
  train      train FCFRNet (stage 2) on the COARSE maps                   (python -m fuse fcfrnet)
  eval       CHECKPOINT on val_selection (depth input INPUT) -> OUT/pred, scored with kitti_completion
  convert    the Paddle port's PDPARAMS (KIND) -> PTH in this project's format  (python -m fuse fcfrnet-convert)

  KITTI          KITTI depth-completion folder: train/, val/, depth_selection/ (default data/kitti_dc)
  RAW            folder of the KITTI raw drives' images                         (default: \$KITTI)
  STD_CONFIG     STD training config           (default configs/fcfrnet/kitti_std.yaml)
  STD_RUN        STD training output folder    (default runs/fcfrnet/kitti_std)
  STD_CHECKPOINT STD weights for coarse        (default \$STD_RUN/best.pth; a .pdparams file works too)
  COARSE         folder name of the coarse maps beside velodyne_raw           (default std_coarse)
  SPLITS         splits coarse writes          (default "train val_selection": what train reads)
  CONFIG         FCFRNet training config       (default configs/fcfrnet/kitti_fcfrnet.yaml)
  RUN            FCFRNet training output folder (default runs/fcfrnet/kitti_fcfrnet)
  CHECKPOINT     weights eval scores           (default \$RUN/best.pth; STD or FCFRNet, .pth or .pdparams)
  INPUT          eval's depth input folder     (default \$COARSE; velodyne_raw for an STD checkpoint)
  OUT            eval output folder            (default outputs/fcfrnet/<CHECKPOINT's folder>_<its name>)
  METHOD         published row eval shows beside (default "FCFR-Net Paddle port"; "STD (Ma et al. 2019)")
  PDPARAMS KIND PTH   convert: the Paddle file, std | fcfrnet (default fcfrnet), the output (default PDPARAMS.pth)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT   distributed training (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.

Examples:
  KITTI=/data/kitti_dc ./fcfrnet.sh train-std
  KITTI=/data/kitti_dc ./fcfrnet.sh coarse && KITTI=/data/kitti_dc ./fcfrnet.sh train
  KITTI=/data/kitti_dc ./fcfrnet.sh train-std --set fcfrnet.train_crop=[128,256] --set optim.epochs=1   # a CPU try
  PDPARAMS=models/fcfrnet/bestmodel.pdparams ./fcfrnet.sh convert
  KITTI=/data/kitti_dc CHECKPOINT=models/fcfrnet/bestmodel.pdparams INPUT=data_depth_dense_new ./fcfrnet.sh eval
USAGE
}
mode="${1:-}"
[[ "$mode" == "-h" || "$mode" == "--help" ]] && { usage; exit 0; }
[[ -n "$mode" ]] || { usage >&2; exit 2; }
shift

KITTI=${KITTI:-data/kitti_dc}
STD_RUN=${STD_RUN:-runs/fcfrnet/kitti_std}
COARSE=${COARSE:-std_coarse}
RUN=${RUN:-runs/fcfrnet/kitti_fcfrnet}
CHECKPOINT=${CHECKPOINT:-$RUN/best.pth}
OUT=${OUT:-outputs/fcfrnet/$(basename "$(dirname "$CHECKPOINT")")_$(basename "${CHECKPOINT%.*}")}
data=(--root "$KITTI")
[[ -n "${RAW:-}" ]] && data+=(--raw "$RAW")
sets=(--set "fcfrnet.root=$KITTI")
[[ -n "${RAW:-}" ]] && sets+=(--set "fcfrnet.raw=$RAW")

run_fuse() { GPUS=1 NNODES=1 "$here/scripts/launch.sh" "$@"; }  # one process: these commands are not distributed

coarse() {
  for split in ${SPLITS:-train val_selection}; do
    run_fuse fcfrnet-predict --checkpoint "${STD_CHECKPOINT:-$STD_RUN/best.pth}" "${data[@]}" --split "$split" \
      --name "$COARSE" "$@"
  done
}

evaluate() {
  run_fuse fcfrnet-predict --checkpoint "$CHECKPOINT" "${data[@]}" --split val_selection --input "${INPUT:-$COARSE}" \
    --out "$OUT/pred" "$@"
  run_fuse eval --protocol kitti_completion --dataset kitti --pred "$OUT/pred" \
    --target "$KITTI/depth_selection/val_selection_cropped/groundtruth_depth" \
    --json "$OUT/metrics.json" --markdown "$OUT/metrics.md" \
    --compare-published base --method "${METHOD:-FCFR-Net Paddle port}" --sequence val_selection
}

case "$mode" in
  train-std) exec "$here/scripts/launch.sh" std --config "${STD_CONFIG:-$here/configs/fcfrnet/kitti_std.yaml}" \
               "${sets[@]}" --set "run.output_dir=$STD_RUN" "$@" ;;
  coarse) coarse "$@" ;;
  train) exec "$here/scripts/launch.sh" fcfrnet --config "${CONFIG:-$here/configs/fcfrnet/kitti_fcfrnet.yaml}" \
           "${sets[@]}" --set "fcfrnet.coarse=$COARSE" --set "run.output_dir=$RUN" "$@" ;;
  eval) evaluate "$@" ;;
  convert) [[ -n "${PDPARAMS:-}" ]] || { echo "error: set PDPARAMS to the Paddle port's .pdparams file" >&2; exit 2; }
           run_fuse fcfrnet-convert --pdparams "$PDPARAMS" --kind "${KIND:-fcfrnet}" \
             --out "${PTH:-${PDPARAMS%.pdparams}.pth}" "$@" ;;
  *) echo "error: unknown mode '$mode'" >&2; usage >&2; exit 2 ;;
esac

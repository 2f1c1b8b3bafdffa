#!/usr/bin/env bash
# IID-RDepth: train the plug-in around a frozen metric DA-V2 / FUSE model, predict, score, and run its study
# and benchmark. A thin wrapper over `python -m fuse restore | infer | eval` and the benchmark scripts
# (docs/iid_rdepth.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./iid_rdepth.sh MODE [options for the python command]

Modes:
  train    train the restorer, invertible stages and AV-LFE (python -m fuse restore)  -> RUN/model.pth
  infer    depth maps, colored PNGs and panels of SPLIT (run.sh)                      -> OUT
  eval     score CHECKPOINT on SPLIT with the E2Depth per-frame protocol (eval.sh)    -> OUT
  study    the acceptance study on synthetic stereo rooms (benchmarks/study_iid_rdepth.py)
  bench    images/s against the diffusion steps T (benchmarks/bench_iid_rdepth.py)

  BASE         depth_anything_v2 | fuse: the frozen model          (default depth_anything_v2)
  AUX          none | events: AV-LFE's auxiliary view               (default none)
  T            diffusion steps of the restorer                      (default: CONFIG's, 4)
  FOUNDATION   the frozen base, a metric checkpoint                 (default: CONFIG's)
  CONFIG       training config                     (default configs/iid_rdepth/mvsec.yaml; mvsec_fuse.yaml for BASE=fuse)
  TRAIN_SPLIT  VAL_SPLIT  split lists (train)                       (default: from CONFIG)
  DEGRADATION  training and validation degradation                  (default: CONFIG's, night)
  RUN          training output folder                               (default runs/iid_rdepth/\${BASE}_\$AUX)
  CHECKPOINT   checkpoint to predict with (infer, eval)             (default \$RUN/model.pth)
  SPLIT        processed split list to predict / score              (default data/mvsec/outdoor_night1.txt)
  OUT          output folder (infer, eval)                          (default outputs/iid_rdepth/<split name>)
  GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT   distributed training (see scripts/launch.sh)
Relative paths are taken from the directory you run the script in.

Examples:
  FOUNDATION=runs/adapt_mvsec_dav2_vits/model.pth ./iid_rdepth.sh train
  BASE=fuse ./iid_rdepth.sh train --set iid_rdepth.diffusion_steps=8
  AUX=events ./iid_rdepth.sh train
  SPLIT=data/mvsec/outdoor_night1.txt ./iid_rdepth.sh eval
  ./iid_rdepth.sh study --seeds 0 1 2
USAGE
}
mode="${1:-}"
[[ "$mode" == "-h" || "$mode" == "--help" ]] && { usage; exit 0; }
[[ -n "$mode" ]] || { usage >&2; exit 2; }
shift

BASE=${BASE:-depth_anything_v2}
AUX=${AUX:-none}
RUN=${RUN:-runs/iid_rdepth/${BASE}_$AUX}
CHECKPOINT=${CHECKPOINT:-$RUN/model.pth}
SPLIT=${SPLIT:-data/mvsec/outdoor_night1.txt}
OUT=${OUT:-outputs/iid_rdepth/$(basename "$SPLIT" .txt)}
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "$here/.venv/bin/python" ]] && PYTHON="$here/.venv/bin/python"
fi
export PYTHON

case "$mode" in
  train)
    default_config="$here/configs/iid_rdepth/mvsec.yaml"
    [[ "$BASE" == fuse ]] && default_config="$here/configs/iid_rdepth/mvsec_fuse.yaml"
    aux=null
    [[ "$AUX" != none ]] && aux="$AUX"
    args=(--config "${CONFIG:-$default_config}" --set "iid_rdepth.base=$BASE" --set "iid_rdepth.aux_view=$aux"
          --set "run.output_dir=$RUN")
    [[ -n "${T:-}" ]] && args+=(--set "iid_rdepth.diffusion_steps=$T")
    [[ -n "${FOUNDATION:-}" ]] && args+=(--set "init.foundation=$FOUNDATION")
    [[ -n "${TRAIN_SPLIT:-}" ]] && args+=(--set "data.train_split=$TRAIN_SPLIT")
    [[ -n "${VAL_SPLIT:-}" ]] && args+=(--set "data.val_split=$VAL_SPLIT")
    [[ -n "${DEGRADATION:-}" ]] && args+=(--set "data.degradation=$DEGRADATION")
    exec "$here/scripts/launch.sh" restore "${args[@]}" "$@" ;;
  infer) exec "$here/run.sh" -c "$CHECKPOINT" -s "$SPLIT" -o "$OUT" "$@" ;;
  eval) CHECKPOINT="$CHECKPOINT" SPLIT="$SPLIT" PRED="$OUT/predictions" OUT="$OUT" exec "$here/eval.sh" "$@" ;;
  study) PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" "$here/benchmarks/study_iid_rdepth.py" "$@" ;;
  bench) PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" "$here/benchmarks/bench_iid_rdepth.py" "$@" ;;
  *) echo "error: unknown mode '$mode'" >&2; usage >&2; exit 2 ;;
esac

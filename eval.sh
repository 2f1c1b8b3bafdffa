#!/usr/bin/env bash
# Score depth predictions with the published protocol (E2Depth / FUSE evaluation.py):
# a thin wrapper over `python -m fuse eval`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./eval.sh [eval options...]

Either score two folders of .npy files (matched by sorted name):
  PRED        folder of predicted metric depths (e.g. outputs/infer/depth)
  TARGET      folder of ground-truth depths (e.g. data/mvsec/outdoor_day1/depths)
or run a model on a processed split first:
  CHECKPOINT  model checkpoint (this project's format, or upstream with --max-depth)
  SPLIT       processed split list; its depth maps are the targets
  PRED        where the predictions go (default outputs/eval/<checkpoint>-<split>-<hash>)
Common:
  DATASET     mvsec | dense | eventscape                  (default mvsec)
  SIZE        small | base | large: print the published FUSE row of that size beside ours
  OUT         folder for metrics.json and metrics.md      (default: no files)
Other options go to \`python -m fuse eval\` (e.g. --sequence outdoor_night1, --pred-format disparity).
Relative paths are taken from the directory you run the script in.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
DATASET=${DATASET:-mvsec}
args=(--dataset "$DATASET")
if [[ -n "${CHECKPOINT:-}" || -n "${SPLIT:-}" ]]; then
  [[ -n "${CHECKPOINT:-}" && -n "${SPLIT:-}" ]] || { echo "error: CHECKPOINT and SPLIT go together" >&2; usage >&2; exit 2; }
  args+=(--checkpoint "$CHECKPOINT" --split "$SPLIT")
  [[ -n "${PRED:-}" ]] && args+=(--pred "$PRED")
elif [[ -n "${PRED:-}" && -n "${TARGET:-}" ]]; then
  args+=(--pred "$PRED" --target "$TARGET")
elif [[ $# -eq 0 ]]; then
  usage >&2
  exit 2
fi
[[ -n "${SIZE:-}" ]] && args+=(--compare-published "$SIZE")
[[ -n "${OUT:-}" ]] && args+=(--json "$OUT/metrics.json" --markdown "$OUT/metrics.md")
exec "$here/scripts/launch.sh" eval "${args[@]}" "$@"

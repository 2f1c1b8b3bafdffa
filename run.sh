#!/usr/bin/env bash
# Predict depth with a FUSE checkpoint: a thin wrapper over `python -m fuse infer`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'EOF'
Usage: ./run.sh [options] [infer options...]

Predict depth maps, colored PNGs and panels with a FUSE checkpoint.
Each setting comes from an option or else from the environment variable in brackets.

  -c, --checkpoint FILE     checkpoint to load                          [CHECKPOINT]
  -s, --split LIST          processed split list                        [SPLIT]
  -r, --recording DIR/NAME  raw MVSEC recording (NAME_data.hdf5 + NAME_gt.hdf5)  [RECORDING]
  -e, --events FILE         event file of a real camera: AEDAT 4, Prophesee RAW / DAT,
                            DSEC events.h5, .npy, text (docs/event_files.md)  [EVENTS]
  -d, --dataset NAME        mvsec | dense | eventscape (default: the checkpoint's)  [DATASET]
  -o, --out DIR             output folder (default: outputs/infer/<checkpoint>-<source>-<hash>,
                            one folder per checkpoint and settings)     [OUT]
  -h, --help                show this help

Give exactly one of --split, --recording and --events. Other options go to `python -m fuse infer`
unchanged, e.g. --mp4, --limit 100, --device cpu, --batch-size 8, --overwrite, for
upstream FUSE files --head metric --max-depth 80 (MVSEC) or 1000 (DENSE), and for --events
--window-ms 50 or --window-events 30000 (how the events are cut into frames).
Relative paths are taken from the directory you run the script in.
The Python interpreter is $PYTHON, else the repository's .venv, else python3.

Examples:
  ./run.sh -c checkpoints/fuse_mvsec.pth -s data/mvsec/test/outdoor_day1.txt -o out/day1 --mp4
  CHECKPOINT=ckpt.pt RECORDING=mvsec/outdoor_night1 OUT=out/night1 ./run.sh --limit 200
  ./run.sh -c checkpoints/event_student.pth -e recording.aedat4 -o out/camera --window-ms 50
EOF
}

checkpoint="${CHECKPOINT:-}"
split="${SPLIT:-}"
recording="${RECORDING:-}"
events="${EVENTS:-}"
dataset="${DATASET:-}"
out="${OUT:-}"
extra=()

while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -c|--checkpoint|-s|--split|-r|--recording|-e|--events|-d|--dataset|-o|--out)
            if (($# < 2)); then
                echo "error: $1 needs a value" >&2
                exit 2
            fi
            case "$1" in
                -c|--checkpoint) checkpoint="$2" ;;
                -s|--split) split="$2" ;;
                -r|--recording) recording="$2" ;;
                -e|--events) events="$2" ;;
                -d|--dataset) dataset="$2" ;;
                -o|--out) out="$2" ;;
            esac
            shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done

sources=0
for given in "$split" "$recording" "$events"; do
    [[ -n "$given" ]] && sources=$((sources + 1))
done
if [[ -z "$checkpoint" || $sources -eq 0 ]]; then
    usage >&2
    exit 2
fi
if ((sources > 1)); then
    echo "error: give one of a split list, a recording and an event file, not several" >&2
    exit 2
fi

if [[ -n "$split" ]]; then
    source_args=(--split "$split")
elif [[ -n "$recording" ]]; then
    source_args=(--recording "$recording")
else
    source_args=(--events "$events")
fi

if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif [[ -x "$here/.venv/bin/python" ]]; then
    python="$here/.venv/bin/python"
else
    python=python3
fi

export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
[[ -n "$dataset" ]] && source_args+=(--dataset "$dataset")
[[ -n "$out" ]] && source_args+=(--out "$out")
exec "$python" -m fuse infer --checkpoint "$checkpoint" "${source_args[@]}" \
    ${extra[@]+"${extra[@]}"}

#!/usr/bin/env bash
# Every method of the house in miniature, on CPU, with no downloads: synthetic MVSEC-format recordings
# -> preparation -> (stand-in) teacher -> FUSE's align / fuse / adapt and its baselines -> AIMDepth (tiny)
# -> DERD-Net on a stereo room -> one comparison (python -m fuse compare) with controlled degradations,
# through the same scripts a researcher runs on real data.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./demo.sh [--full]

  --full       the longer demo: also FCFR-Net's completion of DERD-Net's depth (STD -> FCFRNet),
               AIMDepth (tiny), more training frames and epochs (estimated 40 minutes on 2 CPUs from
               the default run's stage times; not timed)
  METHODS      methods to train and compare, any of: fuse aimdepth derdnet completion
               (default "fuse derdnet"; --full: all four; fuse includes its
               image-only and event-only baselines)
  OUT          output folder for everything the demo writes   (default outputs/demo)
  DAV2         a DA-V2 checkpoint to use as the teacher        (default: train a stand-in teacher)
  ENCODER      encoder size (vitt for the CPU demo; vits with the released DA-V2 vits weights)
  FRAMES       depth frames of the training recording          (default 128; --full 256)
  TEST_FRAMES  depth frames of each test recording             (default 32)
  EPOCHS       epochs of every FUSE training stage             (default: configs/demo/*.yaml)
  SEED         seed of the recordings and of training          (default 0)
  DEMO_REPRODUCIBLE  1: pin CPU kernels to AVX2 and 2 threads, so that every x86 machine with AVX2
               gives the same table (about 1.4x slower; default: the machine's own kernels)
Relative paths are taken from the directory you run the script in.
The comparison is printed at the end and saved under OUT/compare (results.md, chart.png,
robustness.png, panels/).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
full=0
if [[ "${1:-}" == "--full" ]]; then full=1; shift; fi
[[ $# -eq 0 ]] || { echo "error: unknown argument $1 (see ./demo.sh --help)" >&2; exit 2; }

OUT=${OUT:-outputs/demo}
ENCODER=${ENCODER:-vitt}
FRAMES=${FRAMES:-$([[ $full == 1 ]] && echo 256 || echo 128)}
TEST_FRAMES=${TEST_FRAMES:-32}
SEED=${SEED:-0}
METHODS=${METHODS:-$([[ $full == 1 ]] && echo "fuse aimdepth derdnet completion" || echo "fuse derdnet")}
for method in $METHODS; do
  case "$method" in fuse|aimdepth|derdnet|completion) ;; *)
    echo "error: METHODS holds $method; choose from fuse aimdepth derdnet completion" >&2; exit 2 ;; esac
done
has() { [[ " $METHODS " == *" $1 "* ]]; }
if has completion && ! has derdnet; then METHODS="$METHODS derdnet"; fi
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "$here/.venv/bin/python" ]] && PYTHON="$here/.venv/bin/python"
fi
export PYTHON ENCODER DATASET=mvsec
data="$OUT/recordings"
processed="$OUT/processed"
runs="$OUT/runs"
configs="$here/configs/demo"
common=(--set "run.seed=$SEED")
[[ -n "${EPOCHS:-}" ]] && common+=(--set "optim.epochs=$EPOCHS")
[[ $full == 1 ]] && common+=(--set "optim.epochs=${EPOCHS:-10}")
# numpy, ATen, oneDNN and MKL pick AVX-512 or AVX2 code by CPU, and the thread count changes the
# order of sums; AdamW amplifies such rounding to ~1e-3 in the weights, so tables differ a little
# across machines (README, "The demo"). DEMO_REPRODUCIBLE=1 pins AVX2 kernels and 2 threads: the
# same table on every x86 machine with AVX2 and the same library versions, at about 1.4x the time.
if [[ -n "${DEMO_REPRODUCIBLE:-}" ]]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" \
    ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}" MKL_CBWR="${MKL_CBWR:-AVX2}" \
    NPY_DISABLE_CPU_FEATURES="${NPY_DISABLE_CPU_FEATURES:-X86_V4 AVX512_ICL AVX512_SPR}"
fi
step() { printf '\n\033[1m== %s\033[0m  (%d s)\n' "$*" "$((SECONDS - started))"; }
started=$SECONDS
fuse_cli() { "$PYTHON" -m fuse "$@"; }

step "1/7 synthetic MVSEC-format recordings (street: day train, day test, night test; rooms for DERD-Net) -> $data"
make() {  # name frames seed [--night]; an existing recording is kept only if made with the same settings
  "$PYTHON" "$here/scripts/make_synthetic.py" --out "$data" --name "$1" --frames "$2" --seed "$3" "${@:4}"
}
make day_train "$FRAMES" "$SEED"
make day_test "$TEST_FRAMES" "$((SEED + 100))"
make night_test "$TEST_FRAMES" "$((SEED + 100))" --night  # the same street as day_test, at night
if has derdnet; then  # stereo rooms for DERD-Net: one to train on, another (other boxes, motion) to test on
  make room_train 40 "$SEED" --scene room --height 72 --width 96
  make room_test 40 "$((SEED + 1))" --scene room --height 72 --width 96
fi

step "2/7 preparation with the real MVSEC script -> $processed"
"$PYTHON" "$here/scripts/process_mvsec_hdf5.py" --root "$data" --out "$processed" day_train day_test night_test
train_split="$processed/day_train.txt"
export TRAIN_SPLIT="$train_split" VAL_SPLIT="$processed/day_test.txt"
if has aimdepth; then  # AIMDepth reads 5-bin voxels (its paper's)
  "$PYTHON" "$here/scripts/process_mvsec_hdf5.py" --root "$data" --out "$OUT/processed5" --numbins 5 day_train day_test
fi

if has fuse; then
  step "3/7 image teacher"
  if [[ -n "${DAV2:-}" ]]; then
    teacher="$DAV2"
    echo "teacher: DA-V2 checkpoint $teacher"
  else
    teacher="$runs/teacher/model.pth"
    echo "teacher: STAND-IN (no DA-V2 checkpoint given): a $ENCODER DA-V2 model trained on the synthetic day images"
    "$here/scripts/launch.sh" teacher --config "$configs/teacher.yaml" --set "model.encoder=$ENCODER" \
      --set "data.train_split=$train_split" --set "data.val_split=$VAL_SPLIT" --set "run.output_dir=$runs/teacher" \
      "${common[@]}"
  fi

  step "4/7 FUSE: align_feature.sh, fuse_feature.sh, train.sh (and the image-/event-only baselines)"
  CONFIG="$configs/align.yaml" DAV2="$teacher" OUT="$runs/align" "$here/align_feature.sh" "${common[@]}"
  CONFIG="$configs/fuse.yaml" DAV2="$teacher" EVENT_ENCODER="$runs/align/model.pth" OUT="$runs/fuse" \
    "$here/fuse_feature.sh" "${common[@]}"
  CONFIG="$configs/adapt.yaml" FOUNDATION="$runs/fuse/model.pth" OUT="$runs/adapt_fuse" "$here/train.sh" "${common[@]}"
  CONFIG="$configs/adapt.yaml" FOUNDATION="$teacher" OUT="$runs/adapt_image" "$here/train.sh" \
    --set model.kind=depth_anything_v2 "${common[@]}"
  CONFIG="$configs/adapt.yaml" FOUNDATION="$runs/align/model.pth" OUT="$runs/adapt_events" "$here/train.sh" \
    --set model.kind=event_student "${common[@]}"
fi

step "5/7 the other methods: $(has aimdepth && echo "AIMDepth (tiny), ")$(has derdnet && echo "DERD-Net on the rooms")$(has completion && echo ", FCFR-Net completion")"
if has aimdepth; then
  CONFIG="$here/configs/aimdepth/demo.yaml" SIZE=tiny TRAIN_SPLIT="$OUT/processed5/day_train.txt" \
    VAL_SPLIT="$OUT/processed5/day_test.txt" RUN="$runs/aimdepth" "$here/aimdepth.sh" train "${common[@]}"
fi
rooms="$OUT/rooms"
if has derdnet; then  # DSIs of 0.5 s windows every 0.1 s; train on room_train, depth of room_test
  prepare=(--planes 32 --max-confidence 20 --duration 0.5 --step 0.1 --no-progress)
  for room in room_train room_test; do
    fuse_cli derdnet-prepare --recording "$data/$room" --out "$rooms/$room/prepared" "${prepare[@]}"
  done
  fuse_cli derdnet --config "$configs/derdnet.yaml" --set "derdnet.train=$rooms/room_train/prepared" \
    --set "run.output_dir=$runs/derdnet" "${common[@]}"
  fuse_cli derdnet-infer --prepared "$rooms/room_test/prepared" --checkpoint "$runs/derdnet/model.pth" \
    --out "$rooms/room_test/derdnet" --no-progress
  tree=(--recording "$data/room_test" --prepared "$rooms/room_test/prepared" --infer "$rooms/room_test/derdnet"
        --root "$rooms/kitti" --split val)
  fuse_cli fcfrnet-from-events "${tree[@]}" --nn-out "$rooms/eval/nn_fill" --gt-out "$rooms/eval/gt" \
    --sparse-out "$rooms/eval/derdnet"
fi
if has completion; then  # STD -> FCFRNet trained on room_train's DERD-Net depth (docs/fcfrnet.md)
  fuse_cli derdnet-infer --prepared "$rooms/room_train/prepared" --checkpoint "$runs/derdnet/model.pth" \
    --out "$rooms/room_train/derdnet" --no-progress
  fuse_cli fcfrnet-from-events --recording "$data/room_train" --prepared "$rooms/room_train/prepared" \
    --infer "$rooms/room_train/derdnet" --root "$rooms/kitti" --split train
  completion=(--set "fcfrnet.root=$rooms/kitti" --set "fcfrnet.crop=[64,96]" --set "data.workers=0")
  fuse_cli std --config "$here/configs/fcfrnet/events_std.yaml" "${completion[@]}" \
    --set "run.output_dir=$runs/std" --set run.seed="$SEED"
  for split in train val; do
    fuse_cli fcfrnet-predict --checkpoint "$runs/std/model.pth" --root "$rooms/kitti" --split "$split" \
      --name std_coarse --crop 64 96 --no-progress
  done
  fuse_cli fcfrnet --config "$here/configs/fcfrnet/events_fcfrnet.yaml" "${completion[@]}" \
    --set fcfrnet.coarse=std_coarse --set "run.output_dir=$runs/fcfrnet" --set run.seed="$SEED"
  fuse_cli fcfrnet-predict --checkpoint "$runs/fcfrnet/model.pth" --root "$rooms/kitti" --split val \
    --input std_coarse --out "$rooms/eval/completion" --crop 64 96 --no-progress
fi

step "6/7 run.sh and eval.sh as a user runs them (FUSE, night), then one comparison of every method (python -m fuse compare)"
if has fuse; then
  "$here/run.sh" -c "$runs/adapt_fuse/model.pth" -s "$processed/night_test.txt" -o "$OUT/predictions/fuse_night_test" \
    --no-progress --overwrite
  CHECKPOINT="$runs/adapt_fuse/model.pth" SPLIT="$processed/night_test.txt" PRED="$OUT/predictions/fuse_night_test" \
    OUT="$OUT/eval/fuse_night_test" "$here/eval.sh" --no-progress > /dev/null
fi
spec="$OUT/compare.yaml"
{
  echo "# written by demo.sh: the comparison of this run (docs/compare.md)"
  echo "dataset: mvsec"
  echo "protocol: [e2depth$(has derdnet && echo ", derdnet_points")]"
  echo "seed: $SEED"
  echo "methods:"
  echo "  - {name: constant, median_of: '$train_split'}"
  if has fuse; then
    echo "  - {name: FUSE, checkpoint: '$runs/adapt_fuse/model.pth'}"
    echo "  - {name: image only, checkpoint: '$runs/adapt_image/model.pth'}"
    echo "  - {name: events only, checkpoint: '$runs/adapt_events/model.pth'}"
  fi
  has aimdepth && echo "  - {name: AIMDepth tiny, checkpoint: '$runs/aimdepth/model.pth'}"
  if has derdnet; then
    echo "  - {name: DERD-Net, predictions: {room: '$rooms/eval/derdnet'}}"
    echo "  - {name: DERD-Net + NN fill, predictions: {room: '$rooms/eval/nn_fill'}}"
  fi
  has completion && echo "  - {name: DERD-Net + FCFR-Net, predictions: {room: '$rooms/eval/completion'}}"
  echo "sequences:"
  echo "  - {name: day, recording: '$data/day_test'}"
  echo "  - {name: night, recording: '$data/night_test', degrade: false}"
  has derdnet && echo "  - {name: room, targets: '$rooms/eval/gt'}"
  echo "conditions: [image:low_light, events:dropout]"
  echo "severities: [2, 4]"
  echo "panels: {frames: 1, mp4: true, fps: 5}"
} > "$spec"
fuse_cli compare "$spec" --out "$OUT/compare" --no-progress | tee "$OUT/compare.log" | sed -n '/^# Comparison/,$p'

step "7/7 done"
echo "demo finished in $((SECONDS - started)) s; everything is under $OUT (comparison: $OUT/compare/results.md," \
  "chart.png, robustness.png, panels/)"

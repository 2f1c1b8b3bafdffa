#!/usr/bin/env bash
# The whole FUSE pipeline in miniature, on CPU, with no downloads: synthetic MVSEC-format day and
# night recordings -> preparation -> (stand-in) teacher -> align -> fuse -> adapt -> inference ->
# evaluation, through the same scripts a researcher runs on real data.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: [VAR=value ...] ./demo.sh

  OUT          output folder for everything the demo writes   (default outputs/demo)
  DAV2         a DA-V2 checkpoint to use as the teacher        (default: train a stand-in teacher)
  ENCODER      encoder size (vitt for the CPU demo; vits with the released DA-V2 vits weights)
  FRAMES       depth frames of the training recording          (default 128)
  TEST_FRAMES  depth frames of each test recording             (default 40)
  EPOCHS       epochs of every training stage                  (default: configs/demo/*.yaml)
  SEED         seed of the recordings and of training          (default 0)
  AIMDEPTH     1: also train AIMDepth (tiny) on 5-bin voxels and add its row (about 5 more minutes on 2 CPUs)
  DEMO_REPRODUCIBLE  1: pin CPU kernels to AVX2 and 2 threads, so that every x86 machine with AVX2
               gives the same table (about 1.4x slower; default: the machine's own kernels)
Relative paths are taken from the directory you run the script in.
The table is printed at the end and saved as OUT/results.md and OUT/results.png.
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

OUT=${OUT:-outputs/demo}
ENCODER=${ENCODER:-vitt}
FRAMES=${FRAMES:-128}
TEST_FRAMES=${TEST_FRAMES:-40}
SEED=${SEED:-0}
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
# numpy, ATen, oneDNN and MKL pick AVX-512 or AVX2 code by CPU, and the thread count changes the
# order of sums; AdamW amplifies such rounding to ~1e-3 in the weights, so tables differ a little
# across machines (README, "The demo"). DEMO_REPRODUCIBLE=1 pins AVX2 kernels and 2 threads: the
# same table on every x86 machine with AVX2 and the same library versions, at about 1.4x the time.
if [[ -n "${DEMO_REPRODUCIBLE:-}" ]]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" \
    ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}" MKL_CBWR="${MKL_CBWR:-AVX2}" \
    NPY_DISABLE_CPU_FEATURES="${NPY_DISABLE_CPU_FEATURES:-X86_V4 AVX512_ICL AVX512_SPR}"
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$SECONDS

step "1/6 synthetic MVSEC-format recordings (day train, day test, night test) -> $data"
make() {  # name frames seed [--night]; an existing recording is kept only if made with the same settings
  "$PYTHON" "$here/scripts/make_synthetic.py" --out "$data" --name "$1" --frames "$2" --seed "$3" "${@:4}"
}
make day_train "$FRAMES" "$SEED"
make day_test "$TEST_FRAMES" "$((SEED + 100))"
make night_test "$TEST_FRAMES" "$((SEED + 100))" --night  # the same street as day_test, at night

step "2/6 preparation with the real MVSEC script -> $processed"
"$PYTHON" "$here/scripts/process_mvsec_hdf5.py" --root "$data" --out "$processed" day_train day_test night_test
train_split="$processed/day_train.txt"
export TRAIN_SPLIT="$train_split" VAL_SPLIT="$processed/day_test.txt"

step "3/6 image teacher"
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

step "4/6 training: align_feature.sh, fuse_feature.sh, train.sh (FUSE and the image-/event-only baselines)"
CONFIG="$configs/align.yaml" DAV2="$teacher" OUT="$runs/align" "$here/align_feature.sh" "${common[@]}"
CONFIG="$configs/fuse.yaml" DAV2="$teacher" EVENT_ENCODER="$runs/align/model.pth" OUT="$runs/fuse" \
  "$here/fuse_feature.sh" "${common[@]}"
CONFIG="$configs/adapt.yaml" FOUNDATION="$runs/fuse/model.pth" OUT="$runs/adapt_fuse" "$here/train.sh" "${common[@]}"
CONFIG="$configs/adapt.yaml" FOUNDATION="$teacher" OUT="$runs/adapt_image" "$here/train.sh" \
  --set model.kind=depth_anything_v2 "${common[@]}"
CONFIG="$configs/adapt.yaml" FOUNDATION="$runs/align/model.pth" OUT="$runs/adapt_events" "$here/train.sh" \
  --set model.kind=event_student "${common[@]}"

with=()
if [[ "${AIMDEPTH:-0}" == 1 ]]; then
  step "4b/6 AIMDepth (tiny): the recordings prepared again with 5-bin voxels -> $OUT/processed5, aimdepth.sh train"
  "$PYTHON" "$here/scripts/process_mvsec_hdf5.py" --root "$data" --out "$OUT/processed5" --numbins 5 \
    day_train day_test night_test
  CONFIG="$here/configs/aimdepth/demo.yaml" SIZE=tiny TRAIN_SPLIT="$OUT/processed5/day_train.txt" \
    VAL_SPLIT="$OUT/processed5/day_test.txt" RUN="$runs/aimdepth" "$here/aimdepth.sh" train "${common[@]}"
  with=(--with aimdepth)
fi

step "5/6 run.sh (depth maps, colored PNGs, panels) and eval.sh on the test recordings"
for test in day_test night_test; do
  "$here/run.sh" -c "$runs/adapt_fuse/model.pth" -s "$processed/$test.txt" -o "$OUT/predictions/fuse_$test" \
    --no-progress --overwrite
  for model in fuse image events; do
    CHECKPOINT="$runs/adapt_$model/model.pth" SPLIT="$processed/$test.txt" PRED="$OUT/predictions/${model}_$test" \
      OUT="$OUT/eval/${model}_$test" "$here/eval.sh" --no-progress --overwrite > /dev/null
  done
  if [[ "${AIMDEPTH:-0}" == 1 ]]; then
    CHECKPOINT="$runs/aimdepth/model.pth" SPLIT="$OUT/processed5/$test.txt" OUT="$OUT/eval/aimdepth_$test" \
      "$here/aimdepth.sh" eval --no-progress --overwrite > /dev/null
  fi
done

step "6/6 results"
"$PYTHON" "$here/scripts/demo_report.py" --processed "$processed" --eval "$OUT/eval" --out "$OUT" \
  --teacher "$([[ -n "${DAV2:-}" ]] && echo "DA-V2 ($DAV2)" || echo "stand-in (trained on synthetic day images)")" \
  ${with[@]+"${with[@]}"}
echo "demo finished in $((SECONDS - started)) s; everything is under $OUT (panels: $OUT/predictions/fuse_night_test/panels)"

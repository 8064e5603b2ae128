#!/usr/bin/env bash
# Rebuild the bundled checkpoint weights/unet_carvana.pth from real Carvana photos (plus a few
# generated cars), reproducibly from a seed, resumably: see usage below.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/train_bundled.sh data=DIR [key=value ...]

Trains the bundled UNet (ModelZoo layout, width 12) on a Carvana-format folder of real photos,
mixed with generated cars, and writes the checkpoint and a JSON record of how it was made.
12 whole cars of DATA are held out and scored after every epoch (loss and held-out IoU are
printed per epoch). A checkpoint is saved in WORKDIR after every epoch: the same command run
again continues where it stopped, and a finished run is not trained again.
About 85 minutes: 8 epochs of about 10 minutes each, measured on a quiet 2-core AMD EPYC (CUDA is
used when present).

options (key=value):
  data=DIR        Carvana-format training folder with train/ and train_masks/ (required),
                  e.g. the train-cars folder of shared/carvana512
  val=DIR         Carvana-format folder scored once training is over, for the record only
                  (as given, and upscaled to 1918x1280 as a proxy for the original photos);
                  never used for training or for choosing anything (default: none)
  workdir=DIR     generated cars, checkpoints and logs (default: ./work/train)
  out=FILE        checkpoint to write (default: weights/unet_carvana.pth beside this script);
                  its record goes beside it as FILE with .json instead of .pth
  seed=N          seed of the weights, the held-out cars, the crops and the augmentation
                  (default: 0)
  epochs=N        epochs of 300 steps (default: 8; changing it changes the schedule, so a
                  stopped run must be resumed with the same value)
  gen_cars=N      generated cars mixed into training, 16 views each, 10% of the crops
                  (default: 6; seed 101, never the driver's evaluation seed 20261127)
  threads=N       PyTorch threads (default: all cores)
  quiet=0|1       1: no progress bars

examples:
  scripts/train_bundled.sh data=../shared/carvana512/train-cars
  scripts/train_bundled.sh data=../shared/carvana512/train-cars val=../shared/carvana512/val-cars
  scripts/train_bundled.sh data=./carvana workdir=/tmp/train out=/tmp/unet.pth seed=1 epochs=2
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }

DATA="" VAL="" WORK="./work/train" OUT="$ROOT/weights/unet_carvana.pth" SEED=0 EPOCHS=8 GEN_CARS=6
THREADS="" QUIET=0
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        data=*) DATA=${arg#*=} ;;
        val=*) VAL=${arg#*=} ;;
        workdir=*) WORK=${arg#*=} ;;
        out=*) OUT=${arg#*=} ;;
        seed=*) SEED=${arg#*=} ;;
        epochs=*) EPOCHS=${arg#*=} ;;
        gen_cars=*) GEN_CARS=${arg#*=} ;;
        threads=*) THREADS=${arg#*=} ;;
        quiet=*) QUIET=${arg#*=} ;;
        *) die "unknown option '$arg' (options are key=value; see scripts/train_bundled.sh --help)" ;;
    esac
done

[[ -n "$DATA" ]] || die "data=DIR is required: the Carvana-format training folder (see --help)"
[[ -d "$DATA/train" && -d "$DATA/train_masks" ]] || die "data=$DATA: not a Carvana-format folder (no train/ and train_masks/)"
[[ -z "$VAL" || ( -d "$VAL/train" && -d "$VAL/train_masks" ) ]] || die "val=$VAL: not a Carvana-format folder (no train/ and train_masks/)"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "seed must be a whole number, got '$SEED'"
[[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]] || die "epochs must be a positive whole number, got '$EPOCHS'"
[[ "$GEN_CARS" =~ ^[0-9]+$ ]] || die "gen_cars must be a whole number, got '$GEN_CARS'"
[[ -z "$THREADS" || "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive whole number, got '$THREADS'"
[[ "$QUIET" == 0 || "$QUIET" == 1 ]] || die "quiet must be 0 or 1, got '$QUIET'"
[[ "$OUT" == *.pth ]] || die "out must name a .pth file, got '$OUT'"
[[ -d "$(dirname -- "$OUT")" ]] || die "out=$OUT: folder $(dirname -- "$OUT") not found"
mkdir -p -- "$WORK"
INFO="${OUT%.pth}.json"
EVAL_SEED=20261127  # the driver's default sample: measured, never trained on

QUIET_FLAG=()
[[ "$QUIET" == 1 ]] && QUIET_FLAG=(--quiet)

# The command as the record shows it: folder names, not private paths.
RECORD="scripts/train_bundled.sh data=<$(basename -- "$DATA")>"
[[ -n "$VAL" ]] && RECORD+=" val=<$(basename -- "$VAL")>"
RECORD+=" seed=$SEED epochs=$EPOCHS gen_cars=$GEN_CARS"

# Generated cars: deterministic from their seeds, so making them again gives the same files.
EXTRA=()
if [[ "$GEN_CARS" -gt 0 ]]; then
    "$PYTHON" -m unet_infer.sample --out "$WORK/gen-train-s101-c$GEN_CARS" --cars "$GEN_CARS" --seed 101 "${QUIET_FLAG[@]}"
    EXTRA=(--extra "$WORK/gen-train-s101-c$GEN_CARS" --extra-fraction 0.1)
fi
"$PYTHON" -m unet_infer.sample --out "$WORK/sample-$EVAL_SEED" --cars 2 --seed "$EVAL_SEED" "${QUIET_FLAG[@]}"

MEASURE=(--measure "$WORK/sample-$EVAL_SEED")
[[ -n "$VAL" ]] && MEASURE+=(--measure "$VAL" --measure-upscaled "$VAL")
THREAD_FLAG=()
[[ -n "$THREADS" ]] && THREAD_FLAG=(--threads "$THREADS")

# The recipe: width 12; per epoch 300 steps of 4 crops of 384x384 (of the 572x572 images), zoom
# 0.6-1.35, blur/sharpen jitter on 30% of the crops, colour jitter; one-cycle AdamW, peak 2e-3;
# 12 cars of DATA held out for validation.
"$PYTHON" -m unet_infer.train --data "$DATA" "${EXTRA[@]}" --holdout-cars 12 \
    --width 12 --epochs "$EPOCHS" --steps-per-epoch 300 --batch 4 --crop 384 \
    --scale 0.6 1.35 --blur 0.3 --colour 1.0 --lr 2e-3 --seed "$SEED" \
    --checkpoint-dir "$WORK/checkpoint-seed$SEED" --resume --out "$OUT" \
    "${MEASURE[@]}" --info-json "$INFO" --command "$RECORD" "${THREAD_FLAG[@]}" "${QUIET_FLAG[@]}"

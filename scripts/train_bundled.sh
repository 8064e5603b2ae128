#!/usr/bin/env bash
# Rebuild the shipped checkpoints from real Carvana photos, reproducibly from a seed, resumably:
# weights/unet_carvana.pth (model=main, the main job's) or weights/unet_carvana_predict.pth
# (model=predict, the wider one). See usage below.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/train_bundled.sh data=DIR [key=value ...]

Trains a shipped UNet (ModelZoo layout) on a Carvana-format folder of real photos and writes the
checkpoint and a JSON record of how it was made. 12 whole cars of DATA are held out and scored
after every epoch (loss and held-out IoU are printed per epoch). A checkpoint is saved in WORKDIR
after every epoch: the same command run again continues where it stopped, and a finished run is
not trained again. Both recipes end with a phase on whole 572x572 images (what the pipeline
feeds) whose saved model is an exponential moving average of the weights (model=main also
recomputes its BatchNorm statistics on clean whole images: measured neutral, see
docs/training.md). CUDA is used when present.

  model=main     width 12, the main job's model: 8 epochs of 300 steps of 4 crops of 384 with
                 zoom 0.6-1.35 and generated cars (about 85 minutes on 2 cores, AMD EPYC), then
                 300 steps of 4 whole images (about 10 minutes on 2 cores, Intel Xeon with AMX)
  model=predict  width 22, predict's model: whole images at 286x286 (6 epochs of 400 steps of 8),
                 then 300 steps of 4 whole images at 572x572, then twice 1,000 more with generated
                 cars (Intel Xeon with AMX, 2 cores shared with other work: 100, 20, 125 and 115
                 minutes)

options (key=value):
  data=DIR        Carvana-format training folder with train/ and train_masks/ (required),
                  e.g. the train-cars folder of shared/carvana512
  model=NAME      main or predict (default: main)
  val=DIR         Carvana-format folder scored once training is over, for the record only
                  (as given, and upscaled to 1918x1280 as a proxy for the original photos);
                  never used for training or for choosing anything (default: none)
  workdir=DIR     generated cars, checkpoints and logs (default: ./work/train)
  out=FILE        checkpoint to write (default: the model's file in weights/ beside this script);
                  its record goes beside it as FILE with .json instead of .pth
  seed=N          seed of the weights, the held-out cars, the crops and the augmentation
                  (default: 0)
  epochs=N        epochs of the first phase (default: 8 for main, 6 for predict; changing it
                  changes the schedule, so a stopped run must be resumed with the same value)
  gen_cars=N      generated cars mixed into model=main's first phase and model=predict's last,
                  16 views each, 10% of the images (default: 6; seed 101, never the driver's
                  evaluation seed 20261127)
  threads=N       PyTorch threads (default: all cores)
  quiet=0|1       1: no progress bars

examples:
  scripts/train_bundled.sh data=../shared/carvana512/train-cars
  scripts/train_bundled.sh data=../shared/carvana512/train-cars model=predict val=../shared/carvana512/val-cars
  scripts/train_bundled.sh data=./carvana workdir=/tmp/train out=/tmp/unet.pth seed=1 epochs=2
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }

DATA="" MODEL=main VAL="" WORK="./work/train" OUT="" SEED=0 EPOCHS="" GEN_CARS=6 THREADS="" QUIET=0
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        data=*) DATA=${arg#*=} ;;
        model=*) MODEL=${arg#*=} ;;
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

case "$MODEL" in
    main) OUT=${OUT:-$ROOT/weights/unet_carvana.pth} EPOCHS=${EPOCHS:-8} ;;
    predict) OUT=${OUT:-$ROOT/weights/unet_carvana_predict.pth} EPOCHS=${EPOCHS:-6} ;;
    *) die "model must be main or predict, got '$MODEL'" ;;
esac
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
EVAL_SEED=20261127  # the driver's default sample: measured, never trained on

COMMON=(--data "$DATA" --holdout-cars 12 --seed "$SEED" --blur 0.3 --colour 1.0 --resume)
[[ -n "$THREADS" ]] && COMMON+=(--threads "$THREADS")
QUIET_FLAG=()
[[ "$QUIET" == 1 ]] && QUIET_FLAG=(--quiet) && COMMON+=(--quiet)

# The command as the record shows it: folder names, not private paths.
RECORD="scripts/train_bundled.sh data=<$(basename -- "$DATA")> model=$MODEL"
[[ -n "$VAL" ]] && RECORD+=" val=<$(basename -- "$VAL")>"
RECORD+=" seed=$SEED epochs=$EPOCHS"

# Generated cars (deterministic from their seed: made again, the same files), 10% of the images of
# model=main's first phase and of model=predict's last: they keep the default sample in the regime.
EXTRA=()
if [[ "$GEN_CARS" -gt 0 ]]; then
    "$PYTHON" -m unet_infer.sample --out "$WORK/gen-train-s101-c$GEN_CARS" --cars "$GEN_CARS" --seed 101 \
        "${QUIET_FLAG[@]}"
    EXTRA=(--extra "$WORK/gen-train-s101-c$GEN_CARS" --extra-fraction 0.1)
fi
RECORD+=" gen_cars=$GEN_CARS"
WHOLE=(--size 572 --crop 572 --scale 1 1 --batch 4)

# The phases before the last, each model its own: checkpoints and records in WORKDIR.
if [[ "$MODEL" == main ]]; then
    INIT="$WORK/main-phase1-seed$SEED.pth"
    "$PYTHON" -m unet_infer.train "${COMMON[@]}" "${EXTRA[@]}" --width 12 --epochs "$EPOCHS" \
        --steps-per-epoch 300 --batch 4 --crop 384 --scale 0.6 1.35 --lr 2e-3 \
        --checkpoint-dir "$WORK/checkpoint-seed$SEED" --out "$INIT" --info-json "${INIT%.pth}.json"
    LAST=(--epochs 2 --steps-per-epoch 150 --lr 3e-4 --ema 0.99 --bn-images 256
          --checkpoint-dir "$WORK/main-whole-seed$SEED")
else
    FIRST="$WORK/predict-phase1-seed$SEED.pth" INIT="$WORK/predict-phase2-seed$SEED.pth"
    "$PYTHON" -m unet_infer.train "${COMMON[@]}" --width 22 --epochs "$EPOCHS" --steps-per-epoch 400 --batch 8 \
        --size 286 --crop 286 --scale 1 1 --lr 2e-3 --ema 0.998 \
        --checkpoint-dir "$WORK/predict-phase1-seed$SEED" --out "$FIRST" --info-json "${FIRST%.pth}.json"
    "$PYTHON" -m unet_infer.train "${COMMON[@]}" --init "$FIRST" "${WHOLE[@]}" --epochs 2 --steps-per-epoch 150 \
        --lr 3e-4 --ema 0.995 --checkpoint-dir "$WORK/predict-whole-seed$SEED" --out "$INIT" --info-json "${INIT%.pth}.json"
    LONG="$WORK/predict-phase3-seed$SEED.pth"
    "$PYTHON" -m unet_infer.train "${COMMON[@]}" --init "$INIT" "${WHOLE[@]}" "${EXTRA[@]}" --epochs 4 \
        --steps-per-epoch 250 --lr 4e-4 --ema 0.998 --checkpoint-dir "$WORK/predict-long-seed$SEED" \
        --out "$LONG" --info-json "${LONG%.pth}.json"
    INIT="$LONG"
    LAST=("${EXTRA[@]}" --epochs 4 --steps-per-epoch 250 --lr 3e-4 --ema 0.998
          --checkpoint-dir "$WORK/predict-phase4-seed$SEED")
fi

# The last phase: whole 572x572 images from the model before, measured.
"$PYTHON" -m unet_infer.sample --out "$WORK/sample-$EVAL_SEED" --cars 2 --seed "$EVAL_SEED" "${QUIET_FLAG[@]}"
MEASURE=(--measure "$WORK/sample-$EVAL_SEED")
[[ -n "$VAL" ]] && MEASURE+=(--measure "$VAL" --measure-upscaled "$VAL")
"$PYTHON" -m unet_infer.train "${COMMON[@]}" --init "$INIT" "${WHOLE[@]}" "${LAST[@]}" --out "$OUT" \
    "${MEASURE[@]}" --info-json "${OUT%.pth}.json" --command "$RECORD"

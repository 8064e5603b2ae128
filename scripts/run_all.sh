#!/usr/bin/env bash
# The whole guide in one command: sample data (when none is given) -> preprocess -> export ->
# simplify -> compile per batch size -> inference -> rename outputs -> score -> report.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/run_all.sh bs=8 [key=value ...]

Runs every stage of the UNet inference guide in order. All artefacts go under one work folder;
a stage whose outputs are already complete is skipped, so a run that was stopped can be started
again with the same command.

options (key=value):
  bs=8            batch size, or a comma list (bs=1,8,32) sharing every stage that does not
                  depend on the batch size
  data=DIR        Carvana-format folder with train/ and train_masks/
                  (default: a generated sample of 2 cars x 16 views in WORK/sample)
  weights=PTH     UNet checkpoint (default: the bundled weights/unet_w16_sample.pth)
  workdir=DIR     work folder (default: ./work)
  backend=NAME    onnxruntime (default), torch (runs the checkpoint directly) or acl (Ascend:
                  atc + ais_bench)
  precision=P     fp32 (default); int8 (onnxruntime, static quantisation); fp16 or bf16 (torch)
  device=N        device id for the torch/acl backends (default: 0)
  threads=N       CPU threads for inference (default: all cores)
  size=572        network input size
  stream=0|1      1: decode, infer and score in one pass, writing no .bin files
  chip=NAME       Ascend chip for atc (default: read from npu-smi info)
  cars=2          cars in the generated sample (16 views each)
  seed=20261127   seed of the generated sample
  quiet=0|1       1: no progress bars

examples:
  scripts/run_all.sh bs=8
  scripts/run_all.sh bs=1,8,32 precision=int8
  scripts/run_all.sh bs=8 data=./carvana weights=./UNet.pth
  scripts/run_all.sh bs=8 backend=acl data=./carvana weights=./UNet.pth chip=310P3
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }
info() { echo "[run_all] $*"; }

BS=8 DATA="" WEIGHTS="" WORK="./work" BACKEND=onnxruntime PRECISION=fp32 DEVICE=0 THREADS=""
SIZE=572 STREAM=0 CHIP="" CARS=2 SEED=20261127 QUIET=0
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        bs=*) BS=${arg#*=} ;;
        data=*) DATA=${arg#*=} ;;
        weights=*) WEIGHTS=${arg#*=} ;;
        workdir=*) WORK=${arg#*=} ;;
        backend=*) BACKEND=${arg#*=} ;;
        precision=*) PRECISION=${arg#*=} ;;
        device=*) DEVICE=${arg#*=} ;;
        threads=*) THREADS=${arg#*=} ;;
        size=*) SIZE=${arg#*=} ;;
        stream=*) STREAM=${arg#*=} ;;
        chip=*) CHIP=${arg#*=} ;;
        cars=*) CARS=${arg#*=} ;;
        seed=*) SEED=${arg#*=} ;;
        quiet=*) QUIET=${arg#*=} ;;
        *) usage >&2; die "unknown option '$arg' (options are key=value; see --help)" ;;
    esac
done

# ---- check the options ------------------------------------------------------------------
[[ "$BS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bs must be a batch size or a comma list of them, got '$BS'"
IFS=, read -r -a BATCHES <<<"$BS"
[[ "$SIZE" =~ ^[1-9][0-9]*$ ]] || die "size must be a positive whole number, got '$SIZE'"
[[ "$CARS" =~ ^[1-9][0-9]*$ ]] || die "cars must be a positive whole number, got '$CARS'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "seed must be a whole number, got '$SEED'"
[[ -z "$THREADS" || "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive whole number, got '$THREADS'"
[[ "$STREAM" == 0 || "$STREAM" == 1 ]] || die "stream must be 0 or 1, got '$STREAM'"
[[ "$QUIET" == 0 || "$QUIET" == 1 ]] || die "quiet must be 0 or 1, got '$QUIET'"
case "$BACKEND" in onnxruntime|torch|acl) ;; *) die "backend must be onnxruntime, torch or acl, got '$BACKEND'" ;; esac
case "$BACKEND/$PRECISION" in
    onnxruntime/fp32|onnxruntime/int8|torch/fp32|torch/fp16|torch/bf16|acl/fp32|acl/fp16) ;;
    *) die "precision '$PRECISION' is not available on backend '$BACKEND' (onnxruntime: fp32, int8; torch: fp32, fp16, bf16; acl: fp16)" ;;
esac
if [[ "$STREAM" == 1 && "$BACKEND" == acl ]]; then die "stream=1 needs the onnxruntime or torch backend"; fi

WEIGHTS=${WEIGHTS:-$ROOT/weights/unet_w16_sample.pth}
[[ -f "$WEIGHTS" ]] || die "$WEIGHTS: checkpoint not found"
WEIGHTS=$(cd -- "$(dirname -- "$WEIGHTS")" && pwd)/$(basename -- "$WEIGHTS")
if [[ -n "$DATA" ]]; then
    [[ -d "$DATA/train" ]] || die "$DATA/train: image folder not found (data= must hold train/ and train_masks/)"
    [[ -d "$DATA/train_masks" ]] || die "$DATA/train_masks: mask folder not found (data= must hold train/ and train_masks/)"
    DATA=$(cd -- "$DATA" && pwd)
fi
mkdir -p -- "$WORK"
WORK=$(cd -- "$WORK" && pwd)
STAGES="$WORK/.stages"
mkdir -p -- "$STAGES"

QUIET_FLAG=()
if [[ "$QUIET" == 1 ]]; then QUIET_FLAG=(--quiet); export UNET_INFER_QUIET=1; fi
THREAD_FLAG=()
if [[ -n "$THREADS" ]]; then THREAD_FLAG=(--threads "$THREADS"); fi

# ---- completion markers: a stage is complete when its marker holds the same key ---------
# The marker is written last, after every output of the stage is whole.
file_key() { stat -c '%n:%s:%Y' -- "$@"; }
stage_done() { [[ -f "$STAGES/$1" && "$(cat -- "$STAGES/$1")" == "$2" ]]; }
mark_done() { printf '%s' "$2" >"$STAGES/.$1.tmp" && mv -f -- "$STAGES/.$1.tmp" "$STAGES/$1"; }
run_stage() {  # run_stage NAME KEY COMMAND...: skip when complete, else run and mark
    local name=$1 key=$2
    shift 2
    if stage_done "$name" "$key"; then info "$name: complete, skipped"; return 0; fi
    rm -f -- "$STAGES/$name"
    info "$name: $*"
    "$@" || die "stage $name failed (see above); run the same command again to resume"
    mark_done "$name" "$key"
}

# ---- stages ------------------------------------------------------------------------------
stage_sample() {
    if [[ -n "$DATA" ]]; then return 0; fi
    DATA="$WORK/sample"
    run_stage sample "cars=$CARS seed=$SEED" \
        "$PYTHON" -m unet_infer.sample --out "$DATA" --cars "$CARS" --seed "$SEED" "${QUIET_FLAG[@]}"
}

stage_preprocess() {
    local prep="$WORK/prep_bin" key="data=$DATA size=$SIZE"
    if [[ -f "$STAGES/preprocess" ]] && ! stage_done preprocess "$key"; then
        die "$prep was made from other data or another size ($(cat -- "$STAGES/preprocess")); use another workdir="
    fi
    run_stage preprocess "$key" \
        "$PYTHON" "$ROOT/preprocess_unet_pth.py" --src_path="$DATA/train" --save_bin_path="$prep" \
        --size "$SIZE" "${QUIET_FLAG[@]}"
}

stage_export() {
    run_stage export "weights=$(file_key "$WEIGHTS") size=$SIZE" \
        "$PYTHON" "$ROOT/unet_pth2onnx.py" "$WEIGHTS" "$WORK/UNet_dynamic_bs.onnx" --size "$SIZE"
    run_stage simplify "$(file_key "$WORK/UNet_dynamic_bs.onnx")" \
        bash "$ROOT/scripts/onnxsim.sh" "$WORK/UNet_dynamic_bs.onnx" "$WORK/UNet_dynamic_sim.onnx" "$SIZE"
    if [[ "$PRECISION" == int8 ]]; then
        run_stage quantize "$(file_key "$WORK/UNet_dynamic_sim.onnx")" \
            "$PYTHON" -m unet_infer.quantize --model "$WORK/UNet_dynamic_sim.onnx" --calib "$WORK/prep_bin" \
            --output "$WORK/UNet_int8.onnx"
    fi
}

# The model the runner gets for batch size $1, compiled when the backend needs it.
model_for() {
    local bs=$1
    case "$BACKEND/$PRECISION" in
        onnxruntime/fp32) echo "$WORK/UNet_bs$bs.onnx" ;;
        onnxruntime/int8) echo "$WORK/UNet_int8_bs$bs.onnx" ;;
        torch/*) echo "$WEIGHTS" ;;
        acl/*) echo "$WORK/UNet_bs$bs.om" ;;
    esac
}

stage_compile() {
    local bs=$1 out
    out=$(model_for "$bs")
    case "$BACKEND/$PRECISION" in
        onnxruntime/fp32)
            run_stage "compile_bs$bs" "$(file_key "$WORK/UNet_dynamic_sim.onnx")" \
                "$PYTHON" -m unet_infer.compile --model "$WORK/UNet_dynamic_sim.onnx" --batchsize "$bs" \
                --output "$out" "${THREAD_FLAG[@]}" ;;
        onnxruntime/int8)
            run_stage "compile_int8_bs$bs" "$(file_key "$WORK/UNet_int8.onnx")" \
                "$PYTHON" -m unet_infer.compile --model "$WORK/UNet_int8.onnx" --batchsize "$bs" \
                --output "$out" "${THREAD_FLAG[@]}" ;;
        acl/*)
            run_stage "atc_bs$bs" "$(file_key "$WORK/UNet_dynamic_sim.onnx") chip=$CHIP" \
                bash "$ROOT/scripts/atc.sh" --model="$WORK/UNet_dynamic_sim.onnx" --bs="$bs" \
                --output="$WORK/UNet_bs$bs" --size="$SIZE" ${CHIP:+--chip="$CHIP"} ;;
        torch/*) ;;
    esac
}

# Inference into result/bs$bs; an interrupted earlier attempt is moved aside, never mixed in.
stage_infer() {
    local bs=$1 model name="bs$1" key
    model=$(model_for "$bs")
    key="model=$(file_key "$model") prep=$(cat -- "$STAGES/preprocess") backend=$BACKEND precision=$PRECISION"
    if stage_done "infer_$name" "$key"; then info "infer_$name: complete, skipped"; return 0; fi
    rm -f -- "$STAGES/infer_$name" "$STAGES/rename_$name" "$STAGES/score_$name"
    mkdir -p -- "$WORK/result"
    if [[ -e "$WORK/result/$name" || -e "$WORK/result/${name}_summary.json" ]]; then
        local aside
        aside="$WORK/result/$name.old-$(date +%Y%m%d-%H%M%S)"
        info "infer_$name: moving an earlier incomplete or outdated run aside to $aside"
        mkdir -p -- "$aside"
        [[ -e "$WORK/result/$name" ]] && mv -- "$WORK/result/$name" "$aside/"
        [[ -e "$WORK/result/${name}_summary.json" ]] && mv -- "$WORK/result/${name}_summary.json" "$aside/"
    fi
    local cmd=("$PYTHON" -m unet_infer.bench --model="$model" --input="$WORK/prep_bin" --output="$WORK/result"
               --output_dirname="$name" --batchsize="$bs" --backend="$BACKEND" "${QUIET_FLAG[@]}")
    case "$BACKEND" in
        torch) cmd+=(--precision="$PRECISION" --size="$SIZE" --device="$DEVICE" "${THREAD_FLAG[@]}") ;;
        onnxruntime) cmd+=("${THREAD_FLAG[@]}") ;;
        acl) cmd+=(--device="$DEVICE") ;;
    esac
    info "infer_$name: ${cmd[*]}"
    "${cmd[@]}" | tee "$WORK/result/$name.log" || die "stage infer_$name failed (see above)"
    mark_done "infer_$name" "$key"
}

stage_score() {
    local bs=$1 name="bs$1" key
    key=$(cat -- "$STAGES/infer_$name")
    run_stage "rename_$name" "$key" "$PYTHON" "$ROOT/json_parse.py" --output="$WORK/result/$name/"
    run_stage "score_$name" "$key" \
        "$PYTHON" "$ROOT/postprocess_unet_pth.py" --output="$WORK/result/$name" --label="$DATA/train_masks" \
        --result="$WORK/result_$name.txt" --size "$SIZE" "${QUIET_FLAG[@]}"
}

stage_stream() {
    local bs=$1 name="bs$1" model
    model=$(model_for "$bs")
    run_stage "stream_$name" "model=$(file_key "$model") data=$DATA size=$SIZE backend=$BACKEND precision=$PRECISION" \
        "$PYTHON" -m unet_infer.stream --model "$model" --data "$DATA" --batchsize "$bs" --size "$SIZE" \
        --backend "$BACKEND" --precision "$PRECISION" --device "$DEVICE" \
        --result "$WORK/result_$name.txt" --summary "$WORK/result/${name}_summary.json" \
        "${THREAD_FLAG[@]}" "${QUIET_FLAG[@]}"
}

stage_report() {
    "$PYTHON" -m unet_infer.report --work "$WORK" --data "$DATA" --batchsizes "$BS" --backend "$BACKEND" \
        --precision "$PRECISION" --size "$SIZE" || die "stage report failed (see above)"
}

# ---- run ---------------------------------------------------------------------------------
info "work folder: $WORK"
stage_sample
if [[ "$STREAM" == 0 ]]; then stage_preprocess; fi
if [[ "$BACKEND" != torch ]]; then
    if [[ "$PRECISION" == int8 && "$STREAM" == 1 ]]; then stage_preprocess; fi
    stage_export
fi
for bs in "${BATCHES[@]}"; do
    stage_compile "$bs"
    if [[ "$STREAM" == 1 ]]; then stage_stream "$bs"; else stage_infer "$bs"; stage_score "$bs"; fi
done
last="bs${BATCHES[-1]}"
for f in txt json; do cp -f -- "$WORK/result_$last.$f" "$WORK/.result.$f.tmp" && mv -f -- "$WORK/.result.$f.tmp" "$WORK/result.$f"; done
stage_report

for bs in "${BATCHES[@]}"; do
    "$PYTHON" - "$WORK/result_bs$bs.json" "$WORK/result/bs${bs}_summary.json" "$bs" "$BACKEND" "$PRECISION" <<'PY'
import json, sys
result, summary = (json.load(open(p)) for p in sys.argv[1:3])
bs, backend, precision = sys.argv[3:6]
modelzoo = "n/a" if result["modelzoo_iou"] is None else f"{result['modelzoo_iou']:.6f}"
print(f"IoU {result['mean_iou']:.6f} (ModelZoo figure {modelzoo}, {result['n_images']} images), "
      f"throughput {summary['throughput']:.2f} images/s (bs {bs}, {backend} {precision})")
PY
done

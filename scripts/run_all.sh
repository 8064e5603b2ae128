#!/usr/bin/env bash
# The whole guide in one command: sample data (when none is given) -> preprocess -> export ->
# simplify -> [quantise] -> compile per batch size -> inference -> rename outputs -> score ->
# pure-inference timing -> report. Every stage is a command of the package; this script only
# chains them. What a stage is made from, and whether it is complete, is decided by
# `python3 -m unet_infer.stages`; which backend builds what, by the backend registry.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/run_all.sh bs=8 [key=value ...]

Runs every stage of the UNet inference guide in order. All artefacts go under one work folder.
A stage is skipped when it is complete: when what it was made from (file names, sizes and
times, the weights' content, its options) is unchanged; anything else re-runs it and the stages
after it, so a stopped run resumes with the same command and a changed input is never scored
with old results. One run at a time per work folder (a second one is refused). Another backend=
or precision= in the same work folder keeps the results of the others: the first one run there
has the plain names (result/bs8), the others their own (result/onnxruntime_int8_bs8 and the
like), and the report lists them together.

options (key=value):
  bs=8            batch size, or a comma list (bs=1,8,32) sharing every stage that does not
                  depend on the batch size
  data=DIR        Carvana-format folder with train/ and train_masks/ (<stem>_mask.gif, or
                  <stem>_mask.png)
                  (default: a generated sample of 2 cars x 16 views in WORK/sample)
  weights=PTH     UNet checkpoint (default: the bundled weights/unet_carvana.pth)
  workdir=DIR     work folder (default: ./work)
  backend=NAME    auto (default: the fastest here, see below), onnxruntime, openvino (OpenVINO
                  IR, AMX/VNNI on Intel CPUs), torch (runs the checkpoint directly) or acl (Ascend:
                  atc + ais_bench); `python3 -m unet_infer.backends` lists them. auto: onnxruntime
                  with a CUDA GPU; openvino when installed on a CPU with AMX or AVX-512 VNNI/BF16;
                  else onnxruntime (the run's closing line names the one used)
  precision=P     what the backend computes in (default: the backend's first): onnxruntime
                  fp32|int8 (int8: static quantisation), openvino fp32|bf16|int8 (bf16: a hint,
                  fp32 on a CPU without bf16; int8: NNCF), torch fp32|fp16|bf16, acl fp16
  loop=5          timed runs of the pure-inference measurement per batch size (the guide's
                  `--loop`); its throughput is the figure printed; loop=0 skips it
  retime=0|1      1: run the pure-inference measurement again even where it is complete (a
                  fresh figure for the same model, e.g. on a quieter machine); the rest is kept
  labels=yes|none none: run without scoring (no masks needed)
  unreadable=stop|skip  an image that cannot be read: stop (default, the guide's: stage
                  preprocess fails naming it) or skip (left out of the run and listed by
                  preprocess; the file flow only: stream=1 and cluster=ray leave it out of the
                  scores and end with an error naming it)
  device=N        device id for the torch/acl backends (default: 0)
  threads=N       CPU threads for inference (default: all cores)
  size=572        network input size (at least 16)
  stream=0|1      1: decode, infer and score in one pass, writing no image or output .bin files
  cluster=ray     the stream flow on Ray Data: decoding tasks and a pool of inference actors that
                  also score (same results and files as stream=1); a local Ray on this machine's
                  cores, or with address= a running cluster (docs/cluster.md)
  address=A       cluster=ray: join a running Ray cluster, auto or HOST:PORT; the data, weights
                  and work folder must be on storage every node reads at the same path
  actors=N        cluster=ray: inference actors (default: one per GPU with gpus_per_actor=, else 1)
  gpus_per_actor=G  cluster=ray: GPUs each actor reserves (default 0: actors on CPU cores, with
                  threads= each, default the CPUs / actors)
  chip=NAME       Ascend chip for atc (default: read from npu-smi info)
  cars=2          cars in the generated sample (16 views each)
  seed=20261127   seed of the generated sample
  quiet=0|1       1: no progress bars

examples:
  scripts/run_all.sh bs=8
  scripts/run_all.sh bs=1,8,32 precision=int8
  scripts/run_all.sh bs=1 backend=openvino precision=int8
  scripts/run_all.sh bs=8 data=./carvana weights=./UNet.pth
  scripts/run_all.sh bs=8 cluster=ray actors=2
  scripts/run_all.sh bs=8 backend=acl data=./carvana weights=./UNet.pth chip=310P3
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }
info() { echo "[run_all] $*"; }
trap 'echo "error: interrupted" >&2; exit 130' INT TERM
export UNET_INFER_SILENT_INTERRUPT=1  # this trap says it: the Python stages end on Ctrl-C without their own line

BS=8 DATA="" WEIGHTS="" WORK="./work" BACKEND=auto PRECISION="" DEVICE=0 THREADS="" LOOP=5
SIZE=572 STREAM=0 CHIP="" CARS=2 SEED=20261127 QUIET=0 LABELS=yes UNREADABLE=stop RETIME=0
CLUSTER="" ADDRESS="" ACTORS="" GPUS_PER_ACTOR=0
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        bs=*) BS=${arg#*=} ;;
        data=*) DATA=${arg#*=}; [[ -n "$DATA" ]] || die "data= needs a folder" ;;
        weights=*) WEIGHTS=${arg#*=}; [[ -n "$WEIGHTS" ]] || die "weights= needs a .pth file" ;;
        workdir=*) WORK=${arg#*=}; [[ -n "$WORK" ]] || die "workdir= needs a folder" ;;
        backend=*) BACKEND=${arg#*=} ;;
        precision=*) PRECISION=${arg#*=} ;;
        loop=*) LOOP=${arg#*=} ;;
        retime=*) RETIME=${arg#*=} ;;
        labels=*) LABELS=${arg#*=} ;;
        unreadable=*) UNREADABLE=${arg#*=} ;;
        device=*) DEVICE=${arg#*=} ;;
        threads=*) THREADS=${arg#*=} ;;
        size=*) SIZE=${arg#*=} ;;
        stream=*) STREAM=${arg#*=} ;;
        cluster=*) CLUSTER=${arg#*=} ;;
        address=*) ADDRESS=${arg#*=}; [[ -n "$ADDRESS" ]] || die "address= needs auto or HOST:PORT" ;;
        actors=*) ACTORS=${arg#*=} ;;
        gpus_per_actor=*) GPUS_PER_ACTOR=${arg#*=} ;;
        chip=*) CHIP=${arg#*=} ;;
        cars=*) CARS=${arg#*=} ;;
        seed=*) SEED=${arg#*=} ;;
        quiet=*) QUIET=${arg#*=} ;;
        *) die "unknown option '$arg' (options are key=value; see scripts/run_all.sh --help)" ;;
    esac
done

# ---- the options' forms (what they mean is checked by the package) ----------------------------
[[ "$BS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bs must be a batch size or a comma list of them, got '$BS'"
IFS=, read -r -a BATCHES <<<"$BS"
[[ "$SIZE" =~ ^[1-9][0-9]*$ ]] || die "size must be a positive whole number, got '$SIZE'"
(( SIZE >= 16 )) || die "size=$SIZE: the UNet needs at least 16 x 16 (four 2x poolings)"
[[ "$CARS" =~ ^[1-9][0-9]*$ ]] || die "cars must be a positive whole number, got '$CARS'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "seed must be a whole number, got '$SEED'"
[[ "$LOOP" =~ ^[0-9]+$ ]] || die "loop must be a whole number (0: no timing run), got '$LOOP'"
[[ "$RETIME" == 0 || "$RETIME" == 1 ]] || die "retime must be 0 or 1, got '$RETIME'"
[[ "$DEVICE" =~ ^[0-9]+$ ]] || die "device must be a whole number, got '$DEVICE'"
[[ -z "$THREADS" || "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive whole number, got '$THREADS'"
[[ "$STREAM" == 0 || "$STREAM" == 1 ]] || die "stream must be 0 or 1, got '$STREAM'"
[[ -z "$CLUSTER" || "$CLUSTER" == ray ]] || die "cluster must be ray (or left out), got '$CLUSTER'"
[[ -z "$ACTORS" || "$ACTORS" =~ ^[1-9][0-9]*$ ]] || die "actors must be a positive whole number, got '$ACTORS'"
[[ "$GPUS_PER_ACTOR" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "gpus_per_actor must be a number of GPUs, got '$GPUS_PER_ACTOR'"
if [[ -z "$CLUSTER" && ( -n "$ADDRESS" || -n "$ACTORS" || "$GPUS_PER_ACTOR" != 0 ) ]]; then
    die "address=, actors= and gpus_per_actor= go with cluster=ray"
fi
if [[ "$CLUSTER" == ray ]]; then
    if [[ "$LABELS" == none ]]; then die "cluster=ray scores as it goes: it needs the labels"; fi
    STREAM=1  # the cluster runs the stream flow: no .bin files, calibration on the images
fi
[[ "$QUIET" == 0 || "$QUIET" == 1 ]] || die "quiet must be 0 or 1, got '$QUIET'"
[[ "$LABELS" == yes || "$LABELS" == none ]] || die "labels must be yes or none, got '$LABELS'"
[[ "$UNREADABLE" == stop || "$UNREADABLE" == skip ]] || die "unreadable must be stop or skip, got '$UNREADABLE'"
if [[ "$UNREADABLE" == skip && "$STREAM" == 1 ]]; then
    die "unreadable=skip goes with the file flow (stream=1 and cluster=ray end with an error naming the image)"
fi
if [[ "$STREAM" == 1 && "$LABELS" == none ]]; then die "stream=1 scores as it goes: it needs the labels"; fi

if [[ -n "$DATA" ]]; then
    [[ -d "$DATA/train" ]] || die "$DATA/train: image folder not found (data= must hold train/ and train_masks/)"
    if [[ "$LABELS" == yes && ! -d "$DATA/train_masks" ]]; then
        die "$DATA/train_masks: mask folder not found (data= must hold train/ and train_masks/; labels=none runs without scoring)"
    fi
    DATA=$(cd -P -- "$DATA" && pwd)
fi
[[ ! -e "$WORK" || -d "$WORK" ]] || die "$WORK: exists and is not a folder (workdir= must be a folder)"
mkdir -p -- "$WORK" 2>/dev/null || die "$WORK: cannot create the work folder"
WORK=$(cd -P -- "$WORK" && pwd)

stages() { "$PYTHON" -m unet_infer.stages "$@"; }

# ---- one run per work folder --------------------------------------------------------------------
LOCK=$(stages lock --work "$WORK") || exit 2
exec 9>>"$LOCK" || die "$WORK: cannot write in the work folder"
if ! flock -n 9; then  # a run killed a moment ago: its stages may still be ending
    info "waiting up to 5 s for $LOCK (held by another run, or by the ending stages of a stopped one)"
    flock -w 5 9 || die "another run is working in $WORK (it holds $LOCK); wait for it to end, or use another workdir="
fi

# matplotlib's font cache (the report's plots) in the work folder, not in ~/.cache or ~/.config
export MPLCONFIGDIR="${MPLCONFIGDIR:-$WORK/.matplotlib}"
QUIET_FLAG=()
if [[ "$QUIET" == 1 ]]; then QUIET_FLAG=(--quiet); export UNET_INFER_QUIET=1; fi
THREAD_FLAG=()
if [[ -n "$THREADS" ]]; then THREAD_FLAG=(--threads "$THREADS"); fi
LABEL_FLAG=()
if [[ "$LABELS" == none ]]; then LABEL_FLAG=(--no-labels); fi
SKIP_FLAG=()
if [[ "$UNREADABLE" == skip ]]; then SKIP_FLAG=(--skip_unreadable); fi

# The backend's choices and every path, from the package (one place decides them, and whether the
# backend can run in the flow's own process).
FLOW=files
if [[ "$STREAM" == 1 ]]; then FLOW=stream; fi
if [[ "$CLUSTER" == ray ]]; then FLOW=cluster; fi
PLAN=$(stages plan --work "$WORK" ${WEIGHTS:+--weights "$WEIGHTS"} --backend "$BACKEND" ${PRECISION:+--precision "$PRECISION"} \
       --bs "$BS" --flow "$FLOW") || exit 2
eval "$PLAN"
SAMPLED=0
if [[ -z "$DATA" ]]; then DATA=$SAMPLE SAMPLED=1; fi  # no data=: a generated sample (stage sample)
# What each stage is made from is declared in the package (unet_infer.manifests.STAGES): every stage is
# given the same values, and its declaration picks its record, paths and options from them.
VALUES=(--work "$WORK")
for value in "backend=$BACKEND" "precision=$PRECISION" "weights=$WEIGHTS" "data=$DATA" "size=$SIZE" "cars=$CARS" \
             "seed=$SEED" "chip=$CHIP" "device=$DEVICE" "threads=$THREADS" "loop=$LOOP" "actors=$ACTORS" \
             "gpus_per_actor=$GPUS_PER_ACTOR" "run=$RUN_TAG"; do
    VALUES+=(--value "$value")
done

# ---- running a stage ----------------------------------------------------------------------------
fail() {  # fail NAME STATUS: say what to do next
    local name=$1 status=$2
    if (( status == 130 )); then echo "error: interrupted (stage $name)" >&2; exit 130; fi
    if (( status == 2 )); then echo "error: stage $name failed (see the message above)" >&2; exit 2; fi
    echo "error: stage $name failed (exit status $status, see above); run the same command again to resume" >&2
    exit 1
}

# is_complete STAGE [key=value ...]: 0 (said) when the stage's record matches what it is made from now;
# else 1, its record dropped. RECORD: the record's name (e.g. compile_onnxruntime_fp32_bs8); CHANGED:
# --changed when the dropped record was of other inputs, else empty (no record: never run, or stopped).
is_complete() {
    local name=$1 status=0 value
    shift
    MADE=("$name" "${VALUES[@]}")
    for value in "$@"; do MADE+=(--value "$value"); done
    RECORD=$(stages check "${MADE[@]}") || status=$?
    CHANGED=""
    if (( status == 3 )); then CHANGED=--changed status=1; fi
    if (( status == 0 )); then info "$RECORD: complete, skipped"; fi
    if (( status > 1 )); then exit "$status"; fi  # the check said why (2), or was interrupted (130)
    [[ -n "$RECORD" ]] || die "stages check $name named no record (see above)"
    return "$status"
}

# stage STAGE [key=value ...] -- COMMAND...: skipped when complete; else run, then recorded.
stage() {
    local values=()
    while [[ "$1" != -- ]]; do values+=("$1"); shift; done
    shift
    if is_complete "${values[@]}"; then return 0; fi
    info "$RECORD: $*"
    "$@" || fail "$RECORD" $?
    stages done "${MADE[@]}"
}

# ---- stages -------------------------------------------------------------------------------------
stage_sample() {
    if (( SAMPLED == 0 )); then return 0; fi
    if ! stages check sample "${VALUES[@]}" >/dev/null; then
        stages clear-sample --work "$WORK" || exit 2  # another seed or count: not mixed with the old cars
    fi
    stage sample -- \
        "$PYTHON" -m unet_infer.sample --output "$DATA" --cars "$CARS" --seed "$SEED" "${QUIET_FLAG[@]}"
}

stage_preflight() {
    stages preflight --work "$WORK" --data "$DATA" --size "$SIZE" "${LABEL_FLAG[@]}" || exit 2
}

stage_preprocess() {
    stages prune-prep --work "$WORK" --data "$DATA" || exit 2
    stage preprocess -- \
        "$PYTHON" -m unet_infer.preprocess --src_path="$DATA/train" --save_bin_path="$PREP" \
        --size "$SIZE" "${SKIP_FLAG[@]}" "${QUIET_FLAG[@]}"
    if [[ "$UNREADABLE" == stop ]]; then  # none left out by an earlier unreadable=skip run
        stages all-converted --work "$WORK" --data "$DATA" || exit 2
    fi
}

stage_export() {
    stage export -- \
        "$PYTHON" -m unet_infer.export "$WEIGHTS" "$ONNX" --size "$SIZE"
    stage simplify -- \
        "$PYTHON" -m unet_infer.simplify "$ONNX" "$SIMPLIFIED" "$SIZE"
}

stage_quantize() {  # calibrates on the preprocessed images, or (stream=1) on the images themselves
    local calib=$PREP
    if [[ "$STREAM" == 1 ]]; then calib="$DATA/train"; fi
    stage quantize "calib=$calib" -- \
        "$PYTHON" -m unet_infer.quantize --backend "$BACKEND" --model "$SIMPLIFIED" --calib "$calib" \
        --output "$QUANTIZED" --size "$SIZE" "${THREAD_FLAG[@]}" "${QUIET_FLAG[@]}"
}

stage_compile() {
    local bs=$1 model_var="MODEL_$1"
    stage compile "bs=$bs" -- \
        "$PYTHON" -m unet_infer.compile --backend "$BACKEND" --model "$COMPILE_FROM" --batchsize "$bs" \
        --output "${!model_var}" --size "$SIZE" ${CHIP:+--chip "$CHIP"} "${THREAD_FLAG[@]}"
}

run_options() {  # the runner's options for this backend, precision and machine (a backend that another
    # program runs, acl, gets only that program's flags from the runner)
    RUN=(--backend="$BACKEND" --precision="$PRECISION" --size="$SIZE" --device="$DEVICE" "${THREAD_FLAG[@]}"
         "${QUIET_FLAG[@]}")
}

stage_infer() {  # inference into result/bs$bs, then its outputs renamed (stage 5); recorded once both are done
    local bs=$1 model_var="MODEL_$1" out_var="OUTPUTS_$1" log_var="LOG_$1" run_var="RUN_NAME_$1"
    if is_complete infer "bs=$bs"; then return 0; fi
    local record=$RECORD made=("${MADE[@]}")
    stages forget score "${VALUES[@]}" --value "bs=$bs"
    stages clear-run --work "$WORK" --name "${!run_var}" $CHANGED || exit 2  # an earlier run of other inputs, or unfinished
    run_options
    local cmd=("$PYTHON" -m unet_infer.bench --model="${!model_var}" --input="$PREP" --output="$RESULTS"
               --output_dirname="${!run_var}" --batchsize="$bs" "${RUN[@]}")
    info "$record: ${cmd[*]}"
    mkdir -p -- "$RESULTS"
    "${cmd[@]}" 2>&1 | tee "${!log_var}" || fail "$record" "${PIPESTATUS[0]}"
    info "rename_bs$bs: $PYTHON -m unet_infer.rename --output=${!out_var}/"
    "$PYTHON" -m unet_infer.rename --output="${!out_var}/" "${QUIET_FLAG[@]}" || fail "rename_bs$bs" $?
    stages done "${made[@]}"
}

stage_score() {
    local bs=$1 out_var="OUTPUTS_$1" res_var="RESULT_TXT_$1"
    if [[ "$LABELS" == none ]]; then return 0; fi
    stage score "bs=$bs" -- \
        "$PYTHON" -m unet_infer.postprocess --output="${!out_var}" --label="$DATA/train_masks" \
        --result="${!res_var}" --size "$SIZE" "${QUIET_FLAG[@]}"
}

stage_stream() {
    local bs=$1 model_var="MODEL_$1" sum_var="SUMMARY_$1" res_var="RESULT_TXT_$1"
    run_options
    stage stream "bs=$bs" -- \
        "$PYTHON" -m unet_infer.stream --model "${!model_var}" --data "$DATA" --batchsize "$bs" \
        --result "${!res_var}" --summary "${!sum_var}" "${RUN[@]}"
}

stage_cluster() {  # cluster=ray: the stream flow on Ray Data; the same result and summary files
    local bs=$1 model_var="MODEL_$1" sum_var="SUMMARY_$1" res_var="RESULT_TXT_$1"
    local opts=(--backend "$BACKEND" --precision "$PRECISION" --size "$SIZE" "${THREAD_FLAG[@]}" "${QUIET_FLAG[@]}")
    if [[ -n "$ADDRESS" ]]; then opts+=(--address "$ADDRESS"); fi
    if [[ -n "$ACTORS" ]]; then opts+=(--actors "$ACTORS"); fi
    if [[ "$GPUS_PER_ACTOR" != 0 ]]; then opts+=(--gpus-per-actor "$GPUS_PER_ACTOR"); fi
    stage cluster "bs=$bs" -- \
        "$PYTHON" -m unet_infer.cluster --model "${!model_var}" --data "$DATA" --batchsize "$bs" \
        --result "${!res_var}" --summary "${!sum_var}" "${opts[@]}"
}

stage_perf() {  # the guide's performance command: pure inference, --loop runs, nothing scored
    local bs=$1 model_var="MODEL_$1" name_var="PERF_NAME_$1" why=()
    if (( LOOP == 0 )); then return 0; fi
    if (( RETIME == 1 )); then stages forget perf "${VALUES[@]}" --value "bs=$bs"; why=(--retime); fi
    if is_complete perf "bs=$bs"; then return 0; fi
    local record=$RECORD made=("${MADE[@]}")
    stages clear-run --work "$WORK" --name "${!name_var}" $CHANGED "${why[@]}" || exit 2
    run_options
    local cmd=("$PYTHON" -m unet_infer.bench --model="${!model_var}" --loop="$LOOP" --batchsize="$bs"
               --output="$RESULTS" --output_dirname="${!name_var}" "${RUN[@]}")
    info "$record: ${cmd[*]}"
    "${cmd[@]}" || fail "$record" $?
    stages done "${made[@]}"
}

stage_report() {
    if [[ "$LABELS" == none ]]; then return 0; fi
    stages last-result --work "$WORK" --bs "$BS" --run "$RUN_TAG" || exit 2
    "$PYTHON" -m unet_infer.report --work "$WORK" --data "$DATA" --batchsizes "$BS" --backend "$BACKEND" \
        --precision "$PRECISION" --size "$SIZE" --run "$RUN_TAG" || fail report $?
}

# ---- run ----------------------------------------------------------------------------------------
info "work folder: $WORK"
stage_sample
stage_preflight
if [[ "$STREAM" == 0 ]]; then stage_preprocess; fi
if [[ "$SOURCE" == onnx ]]; then
    stage_export
    if [[ "$QUANTIZE" == 1 ]]; then stage_quantize; fi
fi
for bs in "${BATCHES[@]}"; do
    if [[ "$SOURCE" == onnx ]]; then stage_compile "$bs"; fi
    if [[ "$CLUSTER" == ray ]]; then stage_cluster "$bs"; elif [[ "$STREAM" == 1 ]]; then stage_stream "$bs"; else stage_infer "$bs"; stage_score "$bs"; fi
    stage_perf "$bs"
done
stage_report
stages result --work "$WORK" --bs "$BS" --backend "$BACKEND" --precision "$PRECISION" --run "$RUN_TAG" "${LABEL_FLAG[@]}"

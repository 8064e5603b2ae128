#!/usr/bin/env bash
# The whole guide in one command: sample data (when none is given) -> preprocess -> export -> simplify ->
# [quantise] -> compile per batch size -> inference -> rename outputs -> score -> pure-inference timing ->
# report. Every stage is a command of the package; this script only chains them, in order.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }
info() { echo "[run_all] $*"; }
trap 'echo "error: interrupted" >&2; exit 130' INT TERM
export UNET_INFER_SILENT_INTERRUPT=1  # this trap says it: the Python stages end on Ctrl-C without their own line
stages() { "$PYTHON" -m unet_infer.stages "$@"; }

for arg in "$@"; do
    case "$arg" in -h|--help|help) "$PYTHON" -m unet_infer.driver --help; exit 0 ;; esac
done
# Every option checked, as shell variables (BS, DATA, WORKDIR, SIZE, ... as given; FLOW: files, stream or
# cluster; BATCHES; LOCK), the work folder made
OPTIONS=$("$PYTHON" -m unet_infer.driver options "$@") || exit 2
eval "$OPTIONS"

# ---- one run per work folder --------------------------------------------------------------------
exec 9>>"$LOCK" || die "$WORKDIR: cannot write in the work folder"
if ! flock -n 9; then  # a run killed a moment ago: its stages may still be ending
    info "waiting up to 5 s for $LOCK (held by another run, or by the ending stages of a stopped one)"
    flock -w 5 9 || die "another run is working in $WORKDIR (it holds $LOCK); wait for it to end, or use another workdir="
fi
# The backend's choices, every path and VALUES, what every stage is given: from the package
PLAN=$("$PYTHON" -m unet_infer.driver plan "$@") || exit 2
eval "$PLAN"

# matplotlib's font cache (the report's plots) in the work folder, not in ~/.cache or ~/.config
export MPLCONFIGDIR="${MPLCONFIGDIR:-$WORKDIR/.matplotlib}"
QUIET_FLAG=() THREAD_FLAG=() LABEL_FLAG=() SKIP_FLAG=()
if [[ "$QUIET" == 1 ]]; then QUIET_FLAG=(--quiet); export UNET_INFER_QUIET=1; fi
if [[ -n "$THREADS" ]]; then THREAD_FLAG=(--threads "$THREADS"); fi
if [[ "$LABELS" == none ]]; then LABEL_FLAG=(--no-labels); fi
if [[ "$UNREADABLE" == skip ]]; then SKIP_FLAG=(--skip_unreadable); fi
# the runner's options (a backend that another program runs, acl, gets only that program's flags from it)
RUN=(--backend="$BACKEND" --precision="$PRECISION" --size="$SIZE" --device="$DEVICE" "${THREAD_FLAG[@]}"
     "${QUIET_FLAG[@]}")

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
        stages clear-sample --work "$WORKDIR" || exit 2  # another seed or count: not mixed with the old cars
    fi
    stage sample -- \
        "$PYTHON" -m unet_infer.sample --output "$DATA" --cars "$CARS" --seed "$SEED" "${QUIET_FLAG[@]}"
}

stage_preflight() {
    stages preflight --data "$DATA" "${LABEL_FLAG[@]}" || exit 2
}

stage_preprocess() {
    stages prune-prep --work "$WORKDIR" --data "$DATA" || exit 2
    stage preprocess -- \
        "$PYTHON" -m unet_infer.preprocess --src_path="$DATA/train" --save_bin_path="$PREP" \
        --size "$SIZE" "${SKIP_FLAG[@]}" "${QUIET_FLAG[@]}"
    if [[ "$UNREADABLE" == stop ]]; then  # none left out by an earlier unreadable=skip run
        stages all-converted --work "$WORKDIR" --data "$DATA" || exit 2
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
    if [[ "$FLOW" != files ]]; then calib="$DATA/train"; fi
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

stage_infer() {  # inference into result/bs$bs, then its outputs renamed (stage 5); recorded once both are done
    local bs=$1 model_var="MODEL_$1" out_var="OUTPUTS_$1" log_var="LOG_$1" run_var="RUN_NAME_$1"
    if is_complete infer "bs=$bs"; then return 0; fi
    local record=$RECORD made=("${MADE[@]}")
    stages forget score "${VALUES[@]}" --value "bs=$bs"
    stages clear-run --work "$WORKDIR" --name "${!run_var}" $CHANGED || exit 2  # an earlier run of other inputs, or unfinished
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
    stage stream "bs=$bs" -- \
        "$PYTHON" -m unet_infer.stream --model "${!model_var}" --data "$DATA" --batchsize "$bs" \
        --result "${!res_var}" --summary "${!sum_var}" "${RUN[@]}"
}

stage_cluster() {  # cluster=ray: the stream flow on Ray Data; the same result and summary files
    local bs=$1 model_var="MODEL_$1" sum_var="SUMMARY_$1" res_var="RESULT_TXT_$1"
    local gpus=()
    if [[ "$GPUS_PER_ACTOR" != 0 ]]; then gpus=(--gpus-per-actor "$GPUS_PER_ACTOR"); fi
    stage cluster "bs=$bs" -- \
        "$PYTHON" -m unet_infer.cluster --model "${!model_var}" --data "$DATA" --batchsize "$bs" \
        --result "${!res_var}" --summary "${!sum_var}" --backend "$BACKEND" --precision "$PRECISION" --size "$SIZE" \
        "${THREAD_FLAG[@]}" "${QUIET_FLAG[@]}" ${ADDRESS:+--address "$ADDRESS"} ${ACTORS:+--actors "$ACTORS"} "${gpus[@]}"
}

stage_perf() {  # the guide's performance command: pure inference, --loop runs, nothing scored
    local bs=$1 model_var="MODEL_$1" name_var="PERF_NAME_$1" why=()
    if (( LOOP == 0 )); then return 0; fi
    if (( RETIME == 1 )); then stages forget perf "${VALUES[@]}" --value "bs=$bs"; why=(--retime); fi
    if is_complete perf "bs=$bs"; then return 0; fi
    local record=$RECORD made=("${MADE[@]}")
    stages clear-run --work "$WORKDIR" --name "${!name_var}" $CHANGED "${why[@]}" || exit 2
    local cmd=("$PYTHON" -m unet_infer.bench --model="${!model_var}" --loop="$LOOP" --batchsize="$bs"
               --output="$RESULTS" --output_dirname="${!name_var}" "${RUN[@]}")
    info "$record: ${cmd[*]}"
    "${cmd[@]}" || fail "$record" $?
    stages done "${made[@]}"
}

stage_report() {
    if [[ "$LABELS" == none ]]; then return 0; fi
    stages last-result --work "$WORKDIR" --bs "$BS" --run "$RUN_TAG" || exit 2
    "$PYTHON" -m unet_infer.report --work "$WORKDIR" --data "$DATA" --batchsizes "$BS" --backend "$BACKEND" \
        --precision "$PRECISION" --size "$SIZE" --run "$RUN_TAG" || fail report $?
}

# ---- run ----------------------------------------------------------------------------------------
info "work folder: $WORKDIR"
stage_sample
stage_preflight
if [[ "$FLOW" == files ]]; then stage_preprocess; fi
if [[ "$SOURCE" == onnx ]]; then
    stage_export
    if [[ "$QUANTIZE" == 1 ]]; then stage_quantize; fi
fi
for bs in "${BATCHES[@]}"; do
    if [[ "$SOURCE" == onnx ]]; then stage_compile "$bs"; fi
    case "$FLOW" in
        cluster) stage_cluster "$bs" ;;
        stream) stage_stream "$bs" ;;
        files) stage_infer "$bs"; stage_score "$bs" ;;
    esac
    stage_perf "$bs"
done
stage_report
stages result --work "$WORKDIR" --bs "$BS" --backend "$BACKEND" --precision "$PRECISION" --run "$RUN_TAG" "${LABEL_FLAG[@]}"

#!/usr/bin/env bash
# Compile the simplified ONNX model into an Ascend .om for one batch size (the guide's Stage 3 atc line).
set -euo pipefail

usage() {
    cat <<'TXT'
usage: scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8 [--chip=310P3] [--output=UNet_bs8] [--size=572]

Runs, exactly as the inference guide does:
  atc --model=<model> --framework=5 --output=UNet_bs<bs> --input_format=NCHW \
      --input_shape="actual_input_1:<bs>,3,<size>,<size>" --log=info --soc_version=Ascend<chip>
and checks that <output>.om was written.

  --model   the ONNX model (required)
  --bs      the batch size (required)
  --chip    the SoC, e.g. 310P3 (default: the Name column of the first NPU in `npu-smi info`)
  --output  the .om name without .om (default: UNet_bs<bs>)
  --size    input height = width (default: 572)
Each option may also be given as --key value or key=value.
When atc is not on PATH, $ASCEND_SET_ENV (default /usr/local/Ascend/ascend-toolkit/set_env.sh) is sourced.
TXT
}

die() { echo "error: $*" >&2; exit 2; }

model="" bs="" chip="" output="" size=572
while (($#)); do
    arg=$1; shift
    case $arg in
        -h|--help) usage; exit 0 ;;
        --*=*|*=*) key=${arg%%=*}; value=${arg#*=} ;;
        --*) (($#)) || die "$arg needs a value"; key=$arg; value=$1; shift ;;
        *) die "unexpected argument '$arg' (see --help)" ;;
    esac
    case ${key#--} in
        model) model=$value ;;
        bs) bs=$value ;;
        chip) chip=$value ;;
        output) output=$value ;;
        size) size=$value ;;
        *) die "unknown option '$key' (see --help)" ;;
    esac
done
[[ -n $model ]] || die "--model is required (see --help)"
[[ $bs =~ ^[1-9][0-9]*$ ]] || die "--bs must be a positive integer, got '${bs}'"
[[ $size =~ ^[1-9][0-9]*$ ]] || die "--size must be a positive integer, got '${size}'"
[[ -f $model ]] || die "$model: model not found"
output=${output:-UNet_bs${bs}}

find_atc() {
    command -v atc >/dev/null && return
    local set_env=${ASCEND_SET_ENV:-/usr/local/Ascend/ascend-toolkit/set_env.sh}
    [[ -f $set_env ]] || die "atc not found: put the CANN toolkit's atc on PATH or install CANN ($set_env is missing)"
    set +u
    # shellcheck disable=SC1090
    source "$set_env"
    set -u
    command -v atc >/dev/null || die "atc not found even after sourcing $set_env"
}

detect_chip() {
    command -v npu-smi >/dev/null || die "npu-smi not found: pass --chip (e.g. --chip=310P3)"
    chip=$(npu-smi info | awk '/^\+=+/ { if (getline > 0) { print $3; exit } }')
    [[ -n $chip ]] || die "could not read the chip name from 'npu-smi info': pass --chip (e.g. --chip=310P3)"
}

find_atc
[[ -n $chip ]] || detect_chip
atc --model="$model" --framework=5 --output="$output" --input_format=NCHW \
    --input_shape="actual_input_1:${bs},3,${size},${size}" --log=info --soc_version="Ascend${chip}"
[[ -f ${output}.om ]] || die "atc finished but ${output}.om is missing"
echo "wrote ${output}.om"

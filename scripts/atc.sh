#!/usr/bin/env bash
# Compile the simplified ONNX model into an Ascend .om for one batch size (the guide's Stage 3 atc line).
set -euo pipefail

usage() {
    cat <<'TXT'
usage: scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8 [--chip=310P3] [--output=UNet_bs8] [--size=572] [ATC_FLAG=VALUE ...]
       scripts/atc.sh <the guide's atc command line, with atc replaced by scripts/atc.sh>

Runs CANN's atc with the inference guide's command line:
  atc --model=<model> --framework=5 --output=<output> --input_format=NCHW \
      --input_shape=actual_input_1:<bs>,3,<size>,<size> --log=<log> --soc_version=Ascend<chip> [ATC_FLAG=VALUE ...]
and checks that <output>.om was written.

This wrapper's short form:
  --model         the ONNX model (required)
  --bs            the batch size (required unless --input_shape gives it)
  --chip          the SoC, e.g. 310P3 (default: the Name column of the first NPU in `npu-smi info`)
  --output        the .om name without .om (default: UNet_bs<bs>)
  --size          input height = width (default: 572)
atc's own flags, with atc's meaning:
  --framework     5 = ONNX, the only framework supported here (default: 5)
  --input_format  NCHW, the only layout supported here (default: NCHW)
  --input_shape   actual_input_1:<bs>,3,<size>,<size>: gives --bs and --size (must agree with them if also given)
  --log           debug, info, warning, error or null (default: info)
  --soc_version   Ascend<chip>, e.g. Ascend310P3: gives --chip (must agree with it if also given)
  any other atc flag (e.g. --precision_mode=allow_fp32_to_fp16, --op_select_implmode=high_precision)
                  is passed to atc unchanged, after the guide's flags
Each option may be given as --key=value, --key value or key=value.
A value holding a literal ${name} or $name (a variable the shell did not expand) is refused.
When atc is not on PATH, $ASCEND_SET_ENV (default /usr/local/Ascend/ascend-toolkit/set_env.sh) is sourced.

Examples:
  scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8
  scripts/atc.sh model=UNet_dynamic_sim.onnx bs=16 chip=310P3 output=om/UNet_bs16 --precision_mode=allow_fp32_to_fp16
  # the guide's line verbatim; its single quotes keep the shell from expanding ${batch_size}, which is reported:
  scripts/atc.sh --model=UNet_dynamic_sim.onnx --framework=5 --output=UNet_bs${batch_size} --input_format=NCHW --input_shape='actual_input_1:${batch_size},3,572,572' --log=info --soc_version=Ascend${chip_name}
  # the same line as it runs: set the variables first and use double quotes (or write the numbers):
  batch_size=8 chip_name=310P3
  scripts/atc.sh --model=UNet_dynamic_sim.onnx --framework=5 --output=UNet_bs${batch_size} --input_format=NCHW --input_shape="actual_input_1:${batch_size},3,572,572" --log=info --soc_version=Ascend${chip_name}
TXT
}

die() { echo "error: $*" >&2; exit 2; }

# atc's flags other than the ones this wrapper sets itself; they go to atc as given.
ATC_FLAGS=" mode weight om singleop json output_type check_report input_shape_range dynamic_batch_size
 dynamic_image_size dynamic_dims input_hint_shape core_type aicore_num virtual_type out_nodes input_fp16_nodes
 insert_op_conf op_name_map is_input_adjust_hw_layout is_output_adjust_hw_layout external_weight
 compression_optimize_conf precision_mode precision_mode_v2 allow_hf32 keep_dtype modify_mixlist
 customize_dtypes op_precision_mode op_select_implmode optypelist_for_implmode sparsity enable_compress_weight
 compress_weight_conf buffer_optimize mdl_bank_path fusion_switch_file enable_scope_fusion_passes
 enable_single_stream enable_small_channel ac_parallel_enable tiling_schedule_optimize quant_dumpable
 op_compiler_cache_mode op_compiler_cache_dir op_bank_path op_debug_level op_debug_config debug_dir dump_mode
 host_env_os host_env_cpu display_model_info shape_generalized_build_mode atomic_clean_policy deterministic
 status_check oo_level auto_tune_mode save_original_model disable_reuse_memory "

# Refuse a value that still holds a shell variable: the shell was meant to expand it before we got it.
check_expanded() {
    local key=$1 value=$2 re='(\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)' token name why hint
    [[ $value =~ $re ]] || return 0
    token=${BASH_REMATCH[1]}
    name=${token#\$}; name=${name#\{}; name=${name%%[^A-Za-z0-9_]*}
    why="single quotes keep the shell from expanding it"
    [[ $key == input_shape ]] && why="the guide's single quotes keep the shell from expanding it"
    case $name in
        batch_size) hint="set batch_size=8 first and use double quotes, or write the number" ;;
        chip_name) hint="set chip_name=310P3 (the Name column of npu-smi info) first and use double quotes, or write the chip name" ;;
        *) hint="set $name first and use double quotes, or write the value" ;;
    esac
    die "--$key='$value': $token was not expanded ($why); $hint"
}

model="" bs="" chip="" output="" size="" shape="" soc="" framework=5 input_format=NCHW log=info
extra=()
while (($#)); do
    arg=$1; shift
    case $arg in
        -h|--help) usage; exit 0 ;;
        --*=*|*=*) key=${arg%%=*}; value=${arg#*=} ;;
        --*) (($#)) || die "$arg needs a value"; key=$arg; value=$1; shift ;;
        *) die "unexpected argument '$arg' (see --help)" ;;
    esac
    name=${key#--}
    check_expanded "$name" "$value"
    case $name in
        model) model=$value ;;
        bs) bs=$value ;;
        chip) chip=$value ;;
        output) output=$value ;;
        size) size=$value ;;
        framework) framework=$value ;;
        input_format) input_format=$value ;;
        input_shape) shape=$value ;;
        log) log=$value ;;
        soc_version) soc=$value ;;
        *) [[ $name =~ ^[a-z0-9_]+$ && $ATC_FLAGS == *" $name "* ]] || die "unknown option '$key' (see --help)"
           if [[ $arg == --*=* ]]; then extra+=("$arg"); else extra+=("--$name=$value"); fi ;;
    esac
done

[[ $framework == 5 ]] || die "--framework=$framework: only 5 (ONNX) is supported here; this wrapper compiles the ONNX model (0 = Caffe, 1 = MindSpore, 3 = TensorFlow are not)"
[[ $input_format == NCHW ]] || die "--input_format=$input_format: only NCHW is supported here (the model's actual_input_1 is NCHW)"
[[ $log =~ ^(debug|info|warning|error|null)$ ]] || die "--log=$log: expected debug, info, warning, error or null"

# --input_shape=actual_input_1:N,3,H,W -> the batch size and size; they must agree with --bs / --size.
if [[ -n $shape ]]; then
    form="expected actual_input_1:<bs>,3,<size>,<size>, e.g. actual_input_1:8,3,572,572"
    [[ $shape =~ ^([^:]*):([^,]*),([^,]*),([^,]*),([^,]*)$ ]] || die "--input_shape='$shape': $form"
    in_name=${BASH_REMATCH[1]} shape_bs=${BASH_REMATCH[2]} channels=${BASH_REMATCH[3]}
    height=${BASH_REMATCH[4]} width=${BASH_REMATCH[5]}
    [[ $in_name == actual_input_1 ]] || die "--input_shape='$shape': the input is named '$in_name', expected actual_input_1 (the model's input name)"
    [[ -n $shape_bs ]] || die "--input_shape='$shape': the batch size is empty (was \$batch_size set?); $form"
    [[ $shape_bs =~ ^[1-9][0-9]*$ ]] || die "--input_shape='$shape': the batch size must be a positive integer, got '$shape_bs'"
    [[ $channels == 3 ]] || die "--input_shape='$shape': the model takes 3 channels (RGB), got '$channels'"
    [[ $height =~ ^[1-9][0-9]*$ && $height == "$width" ]] || die "--input_shape='$shape': height and width must be the same positive integer, got '$height' and '$width'"
    [[ -z $bs || $bs == "$shape_bs" ]] || die "--bs=$bs and --input_shape='$shape' disagree on the batch size: give one, or the same"
    [[ -z $size || $size == "$height" ]] || die "--size=$size and --input_shape='$shape' disagree on the size: give one, or the same"
    bs=$shape_bs size=$height
fi

# --soc_version=Ascend<chip> -> the chip; it must agree with --chip.
if [[ -n $soc ]]; then
    [[ $soc != Ascend ]] || die "--soc_version=Ascend names no chip (was \$chip_name set? it is the Name column of npu-smi info): write e.g. --soc_version=Ascend310P3"
    [[ $soc == Ascend?* ]] || die "--soc_version=$soc: expected Ascend<chip>, e.g. Ascend310P3 (Ascend and the Name column of npu-smi info)"
    [[ -z $chip || $chip == "${soc#Ascend}" ]] || die "--chip=$chip and --soc_version=$soc disagree: give one, or the same"
    chip=${soc#Ascend}
fi

size=${size:-572}
[[ -n $model ]] || die "--model is required (see --help)"
[[ $bs =~ ^[1-9][0-9]*$ ]] || die "--bs must be a positive integer (or give --input_shape=actual_input_1:<bs>,3,572,572), got '${bs}'"
[[ $size =~ ^[1-9][0-9]*$ ]] || die "--size must be a positive integer, got '${size}'"
[[ -f $model ]] || die "$model: model not found"
output=${output:-UNet_bs${bs}}
[[ ${output##*/} != UNet_bs ]] || die "--output=$output has no batch size (was \$batch_size set?): write e.g. --output=UNet_bs${bs}"

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
    --input_shape="actual_input_1:${bs},3,${size},${size}" --log="$log" --soc_version="Ascend${chip}" \
    ${extra[@]+"${extra[@]}"}
[[ -f ${output}.om ]] || die "atc finished but ${output}.om is missing"
echo "wrote ${output}.om"

#!/usr/bin/env bash
# The CUDA paths on a CUDA GPU, in one command bounded in time (8 minutes by default): the tests that
# need CUDA, the main job with backend=torch precision=fp16, and the benchmark's GPU rows into
# BENCHMARKS.md. Each step runs under `timeout` with its own share of budget=; a failed step does
# not stop the later ones. Whether torch sees a CUDA GPU, and which modules are missing, is asked
# of `python3 -m unet_infer.speed --cuda`; each step is a command of its own (pytest,
# scripts/run_all.sh, scripts/benchmark.sh). This script only runs them and reads their last lines.
set -uo pipefail  # no -e: a failed step must not stop the later ones

# Each step's share of the default budget (seconds); another budget= scales them all.
BASE=480 SHARE_PROBE=30 SHARE_TESTS=150 SHARE_MAIN=110 SHARE_BENCH=160
SHARE_SPARE=$(( BASE - SHARE_PROBE - SHARE_TESTS - SHARE_MAIN - SHARE_BENCH ))
KILL_AFTER=5      # seconds between timeout's TERM and its KILL
BENCH_FIXED=20    # seconds of the benchmark step that are not rows: its start, the model, the plot
STEPS_ALL=(tests main benchmark)
# The Python modules each step needs (looked up before any step runs; a step missing one is not run).
declare -A NEEDS=([tests]=pytest,numpy,PIL,torch [main]=numpy,PIL,tqdm,matplotlib,torch
                  [benchmark]=numpy,tqdm,matplotlib,torch)

usage() {
    cat <<'USAGE'
usage: scripts/gpu_check.sh [key=value ...]

On a machine whose torch sees a CUDA GPU, runs in at most budget= seconds, in this order:
  1. tests      python3 -m pytest -q --durations=5 TESTS          (the tests that need CUDA)
  2. main       scripts/run_all.sh bs=8 backend=torch precision=fp16 workdir=WORK/main quiet=1
  3. benchmark  scripts/benchmark.sh configs=CONFIGS bs=BS rounds=1 loop=100 max_seconds=S
                workdir=WORK/bench markdown=MARKDOWN quiet=1: the GPU section of BENCHMARKS.md,
                headed by the machine (CPU, cores, the GPU's name), the model and the date; the
                other sections (the CPU ones) are kept, and the check fails if one went missing
Each step runs under `timeout` with its own budget; a failed or timed-out step does not stop
the later ones. At the end, one line per step (passed, failed or timed out, its wall time and
figures: pytest's counts, the main job's IoU and images/s, the benchmark's rows); each step's
output is in WORK/steps/<step>.log, and all of it in WORK/gpu_check.log. Exit status 0 when
every step passed, 1 when one did not, 2 for a bad option.

Without a CUDA GPU (asked of torch: python3 -m unet_infer.speed --cuda) it prints one line,
"gpu_check: no CUDA here (<reason>); nothing to do", writes nothing and exits 0.

USAGE
    budget_table
    cat <<'USAGE'

options (key=value):
  budget=480        seconds for everything, at least 16: the probe's and the spare seconds
                    scale with budget/480, and the steps asked for share the rest in proportion
                    to their shares above (steps=tests alone: all of it)
  workdir=./work/gpu_check   WORK: the steps' work folders (main/, bench/), their logs (steps/)
                    and gpu_check.log
  steps=tests,main,benchmark   the steps to run (a comma list; always run in this order)
  tests=tests/test_torch_backend.py   TESTS: pytest targets relative to the repository (comma
                    list); its CUDA tests are marked `cuda` and skip without CUDA
  bs=1,8,32         BS: the benchmark's batch sizes
  configs=torch:fp32,torch:fp16,torch:bf16   CONFIGS: the benchmark's backend:precision list,
                    the GPU rows (onnxruntime is a CPU build there: far too slow for the budget)
  markdown=BENCHMARKS.md   MARKDOWN: the file the section goes into (default: the repository's)

examples:
  scripts/gpu_check.sh
  scripts/gpu_check.sh steps=benchmark budget=240
  scripts/gpu_check.sh steps=tests,main workdir=/tmp/gpu_check
  scripts/gpu_check.sh; cp -r BENCHMARKS.md benchmarks work/gpu_check/gpu_check.log "$OUT"/
USAGE
}

budget_row() {  # budget_row NAME SECONDS LINE [LINE ...]: one row of the budget table
    local name=$1 seconds=$2
    printf '  %-10s %4d s  %s\n' "$name" "$seconds" "$3"
    shift 3
    for line in "$@"; do printf '  %17s  %s\n' "" "$line"; done
}

budget_table() {  # the arithmetic of the default budget, from the shares above
    local rows=9
    echo "The 8 minutes (budget=$BASE; each step runs under a timeout of its share):"
    budget_row probe "$SHARE_PROBE" "python3 start + torch import (~5 s, more from a cold disk) + CUDA" \
        "init (~2 s); the modules the steps need are looked up, not imported"
    budget_row tests "$SHARE_TESTS" "pytest start + torch import + CUDA init (~10 s); 3 torch.compile" \
        "builds on CUDA in mode max-autotune-no-cudagraphs (Triton autotuning," \
        "~30-40 s each, the later ones partly from inductor's cache); CUDA graph" \
        "captures and the upload-ahead tests, width-2 UNet at 16x16 (seconds)"
    budget_row main "$SHARE_MAIN" "sample: 32 images 1918x1280 (~15 s); preprocess to 572x572 (~10 s);" \
        "no export (torch runs the bundled .pth: width 12, 4.4 MB); inference of" \
        "4 batches of 8 in fp16 and the timing run (loop 5): 2 runner processes," \
        "each torch import + CUDA init + cuDNN benchmark (~10 s); scoring (~10 s);" \
        "report (~10 s). The same job on 2 CPU cores (bf16): 71 s, 30 s inference"
    budget_row benchmark "$SHARE_BENCH" "rows = configs x batch sizes = 3 x 3 = $rows, a runner process each (torch" \
        "import + CUDA init + cuDNN benchmark: ~8 s fixed) and its timed loop, cut" \
        "to max_seconds = ($SHARE_BENCH - $BENCH_FIXED) x 5/6 / $rows = $(( (SHARE_BENCH - BENCH_FIXED) * 5 / (6 * rows) )) s a row (5/6: a row overruns" \
        "max_seconds by up to its fixed cost); $BENCH_FIXED s for the benchmark's start," \
        "the random UNet w64 (31.0 M parameters, 124 MB .pth; the full ModelZoo" \
        "UNet, 477.6 GFLOP per 572x572 image) and the plot"
    budget_row spare "$SHARE_SPARE" "timeout's grace (${KILL_AFTER} s a step after TERM) and the summary"
    budget_row total "$BASE" "= $SHARE_PROBE + $SHARE_TESTS + $SHARE_MAIN + $SHARE_BENCH + $SHARE_SPARE"
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }

# ---- options ------------------------------------------------------------------------------------
BUDGET=$BASE WORK=./work/gpu_check STEPS=tests,main,benchmark TESTS=tests/test_torch_backend.py
BENCH_BS=1,8,32 BENCH_CONFIGS=torch:fp32,torch:fp16,torch:bf16 MARKDOWN="$ROOT/BENCHMARKS.md"
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        budget=*) BUDGET=${arg#*=} ;;
        workdir=*) WORK=${arg#*=}; [[ -n "$WORK" ]] || die "workdir= needs a folder" ;;
        steps=*) STEPS=${arg#*=} ;;
        tests=*) TESTS=${arg#*=} ;;
        bs=*) BENCH_BS=${arg#*=} ;;
        configs=*) BENCH_CONFIGS=${arg#*=} ;;
        markdown=*) MARKDOWN=${arg#*=}; [[ -n "$MARKDOWN" ]] || die "markdown= needs a file" ;;
        *) die "unknown option '$arg' (options are budget=, workdir=, steps=, tests=, bs=, configs=, markdown=; see --help)" ;;
    esac
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || die "budget must be a whole number of seconds, got '$BUDGET'"
(( BUDGET >= 16 )) || die "budget=$BUDGET: at least 16 seconds (each step needs at least 1 s)"
[[ "$BENCH_BS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bs must be a comma list of batch sizes, got '$BENCH_BS'"
[[ "$BENCH_CONFIGS" =~ ^[a-z0-9_]+:[a-z0-9]+(,[a-z0-9_]+:[a-z0-9]+)*$ ]] \
    || die "configs must be a comma list of backend:precision, got '$BENCH_CONFIGS'"
declare -A WANTED=()
IFS=, read -r -a GIVEN <<<"$STEPS"
(( ${#GIVEN[@]} )) || die "steps= needs at least one of tests, main, benchmark"
for step in "${GIVEN[@]}"; do
    [[ -n "${NEEDS[$step]+set}" ]] || die "unknown step '$step' in steps=$STEPS (steps are tests, main, benchmark)"
    WANTED[$step]=1
done
IFS=, read -r -a TEST_TARGETS <<<"$TESTS"
(( ${#TEST_TARGETS[@]} )) || die "tests= needs at least one pytest target"
for target in "${TEST_TARGETS[@]}"; do
    [[ -e "$ROOT/${target%%::*}" ]] || die "tests=: $ROOT/${target%%::*} not found (targets are relative to the repository)"
done
[[ ! -e "$WORK" || -d "$WORK" ]] || die "$WORK: exists and is not a folder (workdir= must be a folder)"
[[ ! -d "$MARKDOWN" ]] || die "$MARKDOWN: is a folder, expected a markdown file (markdown=)"
command -v timeout >/dev/null || die "timeout (coreutils) not found: every step runs under it"

# The probe's and the spare seconds scale with budget=; the rest goes to the steps asked for, by their shares.
declare -A SHARES=([tests]=$SHARE_TESTS [main]=$SHARE_MAIN [benchmark]=$SHARE_BENCH)
at_least_1() { echo $(( $1 < 1 ? 1 : $1 )); }
declare -A BUDGETS=([probe]=$(at_least_1 $(( BUDGET * SHARE_PROBE / BASE ))))
SPARE=$(at_least_1 $(( BUDGET * SHARE_SPARE / BASE )))
WANTED_SHARES=0
for step in "${!WANTED[@]}"; do WANTED_SHARES=$(( WANTED_SHARES + SHARES[$step] )); done
for step in "${!WANTED[@]}"; do
    BUDGETS[$step]=$(at_least_1 $(( (BUDGET - BUDGETS[probe] - SPARE) * SHARES[$step] / WANTED_SHARES )))
done

# ---- is there a CUDA GPU? (nothing is written before the answer) ----------------------------------
ALL_NEEDS=$(for step in "${STEPS_ALL[@]}"; do [[ -n "${WANTED[$step]:-}" ]] && echo "${NEEDS[$step]}"; done \
            | tr , '\n' | awk '!seen[$0]++' | paste -sd,)  # each module once
PROBE=$(timeout -k "$KILL_AFTER" "${BUDGETS[probe]}" "$PYTHON" -m unet_infer.speed --cuda --need "$ALL_NEEDS" 2>&1)
PROBE_STATUS=$?
GPU_LINE=$(grep -m1 -E '^(cuda: |no CUDA here \()' <<<"$PROBE")
MISSING=$(grep -m1 '^missing: ' <<<"$PROBE"); MISSING=${MISSING#missing: }
if [[ "$GPU_LINE" == "no CUDA here ("* ]]; then
    echo "gpu_check: $GPU_LINE; nothing to do"
    exit 0
fi
if [[ "$GPU_LINE" != "cuda: "* || "$PROBE_STATUS" != 0 ]]; then
    why=$(tail -n 1 <<<"$PROBE")
    (( PROBE_STATUS == 124 || PROBE_STATUS == 137 )) && why="no answer within ${BUDGETS[probe]} s"
    echo "gpu_check: error: cannot tell whether there is a CUDA GPU ($PYTHON -m unet_infer.speed --cuda, exit status $PROBE_STATUS: ${why:-no output})" >&2
    exit 1
fi
GPU=${GPU_LINE#cuda: }
GPU_NAME=${GPU%% (*}

# ---- the work folder and the log ------------------------------------------------------------------
mkdir -p -- "$WORK/steps" 2>/dev/null || die "$WORK: cannot create the work folder"
WORK=$(cd -P -- "$WORK" && pwd)
[[ "$MARKDOWN" == /* ]] || MARKDOWN="$PWD/$MARKDOWN"
LOG="$WORK/gpu_check.log"
: >"$LOG" || die "$LOG: cannot write the log"
say() { echo "[gpu_check] $*" | tee -a "$LOG"; }

say "$(date '+%F %T'): cuda: $GPU"
PLAN="probe ${BUDGETS[probe]}"
for step in "${STEPS_ALL[@]}"; do [[ -z "${WANTED[$step]:-}" ]] || PLAN+=" + $step ${BUDGETS[$step]}"; done
say "budget $BUDGET s: $PLAN + spare $SPARE s; log $LOG"
if [[ -n "$MISSING" ]]; then
    say "missing here: $MISSING (pip install -r requirements.txt); the steps that need them are not run"
fi

# ---- the steps ------------------------------------------------------------------------------------
declare -A RESULT=() FIGURES=()
FAILED=0

needs_missing() {  # the modules of step $1 that the probe found missing (empty: none)
    local name out=()
    IFS=, read -r -a names <<<"${NEEDS[$1]}"
    for name in "${names[@]}"; do
        if [[ ", $MISSING, " == *", $name, "* ]]; then out+=("$name"); fi
    done
    (IFS=,; echo "${out[*]}")
}

run_step() {  # run_step NAME COMMAND...: under timeout with the step's budget; sets RESULT[NAME]
    local name=$1 budget=${BUDGETS[$1]} out="$WORK/steps/$1.log" start=$SECONDS status lacking
    shift
    lacking=$(needs_missing "$name")
    if [[ -n "$lacking" ]]; then
        RESULT[$name]="not run: needs $lacking"; FAILED=1
        say "$name: ${RESULT[$name]}"
        return
    fi
    say "$name: $* (budget $budget s)"
    timeout -k "$KILL_AFTER" "$budget" "$@" >"$out" 2>&1 </dev/null
    status=$?
    { echo "---- $name output ($out) ----"; cat "$out"; echo "---- end of $name output ----"; } >>"$LOG"
    local wall=$(( SECONDS - start ))
    case $status in
        0) RESULT[$name]="passed in $wall s" ;;
        124|137) RESULT[$name]="timed out after $budget s" ;;
        *) RESULT[$name]="failed (exit status $status) after $wall s" ;;
    esac
    (( status == 0 )) || FAILED=1
    say "$name: ${RESULT[$name]}"
    if (( status != 0 )); then tail -n 8 "$out" | sed 's/^/    /' | tee -a "$LOG"; fi
}

check_tests() {
    FIGURES[tests]=$(grep -E '[0-9]+ (passed|failed|errors?|skipped)|no tests ran' "$WORK/steps/tests.log" \
                     | tail -n 1 | sed -E 's/^=+ *//; s/ *=+$//')
}

check_main() {
    FIGURES[main]=$(grep -E '^IoU ' "$WORK/steps/main.log" | tail -n 1)
    if [[ "${RESULT[main]}" == passed* && -z "${FIGURES[main]}" ]]; then
        RESULT[main]="failed: no IoU line at the end"; FAILED=1
    fi
}

check_benchmark() {  # the rows, the section's heading (the GPU's name, a date), the other sections kept
    local out="$WORK/steps/benchmark.log" done_line section heading
    FIGURES[benchmark]=$(grep -E '^\[benchmark\] [a-z0-9_]+ [a-z0-9]+ bs [0-9]+: ' "$out" | sed 's/^\[benchmark\] //')
    [[ "${RESULT[benchmark]}" == passed* ]] || return
    done_line=$(grep -E '^\[benchmark\] [0-9]+ rows? in .*\(section ' "$out" | tail -n 1)
    section=${done_line#*(section \'}; section=${section%%\')*}
    local problem=""
    if [[ -z "$done_line" ]]; then problem="no section was written"
    elif [[ "$section" != *"$GPU_NAME"* ]]; then problem="the section '$section' does not name the GPU ($GPU_NAME)"
    elif ! [[ "$section" =~ ·\ [0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then problem="the section '$section' has no date"
    else
        while IFS= read -r heading; do
            [[ -z "$heading" ]] || grep -qxF -- "$heading" "$MARKDOWN" || problem="section '${heading#\#\# }' of $MARKDOWN is gone"
        done <<<"$HEADINGS_BEFORE"
    fi
    if [[ -n "$problem" ]]; then RESULT[benchmark]="failed: $problem"; FAILED=1
    else RESULT[benchmark]+=": section '$section' in $MARKDOWN"; fi
}

if [[ -n "${WANTED[tests]:-}" ]]; then
    TARGETS=()
    for target in "${TEST_TARGETS[@]}"; do TARGETS+=("$ROOT/$target"); done
    run_step tests "$PYTHON" -m pytest -q --durations=5 --rootdir "$ROOT" "${TARGETS[@]}"
    check_tests
fi
if [[ -n "${WANTED[main]:-}" ]]; then
    run_step main bash "$ROOT/scripts/run_all.sh" bs=8 backend=torch precision=fp16 workdir="$WORK/main" quiet=1
    check_main
fi
if [[ -n "${WANTED[benchmark]:-}" ]]; then
    IFS=, read -r -a bs_list <<<"$BENCH_BS"; IFS=, read -r -a config_list <<<"$BENCH_CONFIGS"
    ROWS=$(( ${#bs_list[@]} * ${#config_list[@]} ))
    MAX_SECONDS=$(( (BUDGETS[benchmark] - BENCH_FIXED) * 5 / (6 * ROWS) ))
    (( MAX_SECONDS >= 1 )) || MAX_SECONDS=1
    HEADINGS_BEFORE=$(grep -E '^## ' "$MARKDOWN" 2>/dev/null)
    run_step benchmark bash "$ROOT/scripts/benchmark.sh" configs="$BENCH_CONFIGS" bs="$BENCH_BS" rounds=1 loop=100 \
        max_seconds="$MAX_SECONDS" workdir="$WORK/bench" markdown="$MARKDOWN" quiet=1
    check_benchmark
fi

# ---- the summary ------------------------------------------------------------------------------------
say "summary ($GPU, $SECONDS s in all):"
for step in "${STEPS_ALL[@]}"; do
    [[ -n "${WANTED[$step]:-}" ]] || continue
    line="  $step: ${RESULT[$step]}"
    if [[ "$step" != benchmark && -n "${FIGURES[$step]:-}" ]]; then line+="; ${FIGURES[$step]}"; fi
    echo "$line" | tee -a "$LOG"
    if [[ "$step" == benchmark && -n "${FIGURES[benchmark]:-}" ]]; then echo "${FIGURES[benchmark]}" | sed 's/^/    /' | tee -a "$LOG"; fi
done
if (( FAILED )); then say "some steps did not pass (their output: $WORK/steps/)"; exit 1; fi
say "every step passed"

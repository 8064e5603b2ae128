#!/usr/bin/env bash
# Throughput tables: the runner in pure-inference mode (as `ais_bench --loop=100`) over
# backend x precision x batch size; the table goes into BENCHMARKS.md, the plot beside it.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/benchmark.sh [key=value ...]

Runs `python3 -m unet_infer.bench --model=M --loop=L --batchsize=B` (pure inference, no input
files) for every backend:precision and batch size, and writes the table (images/s, p50 and p99
ms per batch, ms per image, loop, machine, date) as this machine's section of BENCHMARKS.md,
plus a PNG plot of images/s against batch size. The models are made once under the work folder
and reused. images/s = 1000 x batch size / mean compute time of one batch (ms), as ais_bench.

options (key=value; defaults for a CPU-only machine / a machine with a CUDA GPU):
  bs=1,2,4                 batch sizes (GPU: 1,4,8,16,32,64)
  configs=LIST             backend:precision list; onnxruntime: fp32, int8; torch: fp32, fp16,
                           bf16; acl: fp16 (Ascend, needs ais_bench and atc)
                           (CPU: onnxruntime:fp32,onnxruntime:int8,torch:fp32,torch:bf16;
                            GPU: torch:fp32,torch:fp16,torch:bf16,onnxruntime:fp32)
  loop=100                 timed runs per row (ais_bench --loop)
  max_seconds=60           about the most seconds one row may take: the loop count is cut
                           (down to 1) to fit (GPU: 120); max_seconds=none: no limit
  weights=random           a UNet checkpoint (.pth), or random: UNet(width) with seed 0,
                           as fast as trained weights
  width=64                 width of the random UNet (64: the ModelZoo model, 31.0 M parameters)
  size=572                 input height = width
  workdir=./work/bench     models, calibration images and the runs' summaries
  markdown=BENCHMARKS.md   the file to update (default: the one at the repository root)
  plot=PNG                 the plot (default: benchmarks/<section>.png beside the markdown)
  threads=N                CPU threads per run (default: all cores)
  device=N                 CUDA (torch) or NPU (acl) device id (default: 0)
  quiet=0|1                1: no progress display, only the summary lines

examples:
  scripts/benchmark.sh
  scripts/benchmark.sh bs=1 configs=onnxruntime:fp32 loop=10
  scripts/benchmark.sh weights=./UNet.pth bs=1,4,8,16,32,64
  scripts/benchmark.sh configs=torch:fp32,torch:fp16 max_seconds=none
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }

BS="" CONFIGS="" LOOP=100 MAX_SECONDS="" WEIGHTS=random WIDTH=64 SIZE=572 WORK=./work/bench
MARKDOWN="$ROOT/BENCHMARKS.md" PLOT="" THREADS="" DEVICE="" QUIET=0
for arg in "$@"; do
    case "$arg" in
        -h|--help|help) usage; exit 0 ;;
        bs=*) BS=${arg#*=} ;;
        configs=*) CONFIGS=${arg#*=} ;;
        loop=*) LOOP=${arg#*=} ;;
        max_seconds=*) MAX_SECONDS=${arg#*=} ;;
        weights=*) WEIGHTS=${arg#*=} ;;
        width=*) WIDTH=${arg#*=} ;;
        size=*) SIZE=${arg#*=} ;;
        workdir=*) WORK=${arg#*=} ;;
        markdown=*) MARKDOWN=${arg#*=} ;;
        plot=*) PLOT=${arg#*=} ;;
        threads=*) THREADS=${arg#*=} ;;
        device=*) DEVICE=${arg#*=} ;;
        quiet=*) QUIET=${arg#*=} ;;
        *) usage >&2; die "unknown option '$arg' (options are key=value; see --help)" ;;
    esac
done

[[ -z "$BS" || "$BS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bs must be a batch size or a comma list of them, got '$BS'"
[[ "$LOOP" =~ ^[1-9][0-9]*$ ]] || die "loop must be a positive whole number, got '$LOOP'"
[[ "$WIDTH" =~ ^[1-9][0-9]*$ ]] || die "width must be a positive whole number, got '$WIDTH'"
[[ "$SIZE" =~ ^[1-9][0-9]*$ ]] || die "size must be a positive whole number, got '$SIZE'"
[[ -z "$MAX_SECONDS" || "$MAX_SECONDS" == none || "$MAX_SECONDS" =~ ^[0-9]*\.?[0-9]+$ ]] \
    || die "max_seconds must be a number of seconds or none, got '$MAX_SECONDS'"
[[ -z "$THREADS" || "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive whole number, got '$THREADS'"
[[ -z "$DEVICE" || "$DEVICE" =~ ^[0-9]+$ ]] || die "device must be a whole number, got '$DEVICE'"
[[ "$QUIET" == 0 || "$QUIET" == 1 ]] || die "quiet must be 0 or 1, got '$QUIET'"

# Defaults for this machine: a CUDA GPU (seen by torch) or the CPU only.
if [[ -z "$BS" || -z "$CONFIGS" || -z "$MAX_SECONDS" ]]; then
    if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "[benchmark] a CUDA GPU is available: GPU defaults"
        BS=${BS:-1,4,8,16,32,64}
        CONFIGS=${CONFIGS:-torch:fp32,torch:fp16,torch:bf16,onnxruntime:fp32}
        MAX_SECONDS=${MAX_SECONDS:-120}
    else
        echo "[benchmark] no CUDA GPU: CPU defaults"
        BS=${BS:-1,2,4}
        CONFIGS=${CONFIGS:-onnxruntime:fp32,onnxruntime:int8,torch:fp32,torch:bf16}
        MAX_SECONDS=${MAX_SECONDS:-60}
    fi
fi

cmd=("$PYTHON" -m unet_infer.benchmark --weights "$WEIGHTS" --width "$WIDTH" --size "$SIZE" --batchsizes "$BS"
     --configs "$CONFIGS" --loop "$LOOP" --workdir "$WORK" --markdown "$MARKDOWN")
if [[ "$MAX_SECONDS" != none ]]; then cmd+=(--max-seconds "$MAX_SECONDS"); fi
if [[ -n "$PLOT" ]]; then cmd+=(--plot "$PLOT"); fi
if [[ -n "$THREADS" ]]; then cmd+=(--threads "$THREADS"); fi
if [[ -n "$DEVICE" ]]; then cmd+=(--device "$DEVICE"); fi
if [[ "$QUIET" == 1 ]]; then cmd+=(--quiet); fi

# The command line as typed goes into the markdown section beside the python3 command it ran.
UNET_BENCH_COMMAND="scripts/benchmark.sh"
for arg in "$@"; do UNET_BENCH_COMMAND+=" $(printf '%q' "$arg")"; done
export UNET_BENCH_COMMAND

echo "[benchmark] ${cmd[*]}"
exec "${cmd[@]}"

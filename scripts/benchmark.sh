#!/usr/bin/env bash
# Throughput tables: the runner in pure-inference mode (as `ais_bench --loop=100`) over
# backend x precision x batch size; the table goes into BENCHMARKS.md in the work folder (the
# repository's with publish=1), the plot beside it.
# Every decision is python3 -m unet_infer.speed's: this script only maps key=value to its flags.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/benchmark.sh [key=value ...]

Runs `python3 -m unet_infer.bench --model=M --loop=L --batchsize=B` (pure inference, no input
files) for every backend:precision and batch size, and writes the table (images/s, p50 and p99
ms per batch, ms per image, loop, machine, date) as this machine's section of a BENCHMARKS.md
in the work folder (the repository's own only with publish=1), plus a PNG plot of images/s
against batch size. The models are made once under the work folder
and reused. images/s = 1000 x batch size / mean compute time of one batch (ms), as ais_bench.
Every row runs once per round, the rounds interleaved (row A, row B, ..., then A, B, ... again),
after 2 warm-up runs; a row shows its rounds' medians, the range of images/s and the 1-minute
load average (the CPUs may be shared). Beside each openvino row (fp32, bf16, int8), a bare
OpenVINO session on the same model, and the runner's speed against it.

options (key=value), each passed to python3 -m unet_infer.speed, which checks it:
  bs=LIST                  batch sizes, e.g. 1,4,8                             (--batchsizes)
  configs=LIST             backend:precision list, e.g. onnxruntime:fp32,torch:bf16 (--configs)
  max_seconds=S|none       about the most seconds one row may take: the loop count is cut
                           (down to 1) to fit; none: no limit                  (--max-seconds)
      without bs=, configs= or max_seconds=: this machine's defaults (one set with a CUDA GPU,
      one for the CPU only), chosen and printed by python3 -m unet_infer.speed; its --help
      lists them and every backend's precisions
  loop=100                 timed runs per row and round (ais_bench --loop)     (--loop)
  rounds=3                 interleaved rounds; a row's figures are their medians (--rounds)
  warmup=2                 untimed runs before each timed run (--warmup)
  bare=1                   0: no bare OpenVINO session beside the openvino rows (--no-bare)
  weights=random           a UNet checkpoint (.pth), or random: UNet(width) with seed 0,
                           as fast as trained weights                          (--weights)
  width=64                 width of the random UNet (64: the ModelZoo model)   (--width)
  size=572                 input height = width                                (--size)
  workdir=./work/bench     models, calibration images and the runs' summaries  (--workdir)
  markdown=FILE            the markdown file to update (default: WORKDIR/BENCHMARKS.md)
  publish=0|1              1: update the repository's BENCHMARKS.md (its section for this
                           machine, model and date; the plot in benchmarks/ beside it)
  plot=PNG                 the plot (default: benchmarks/<section>.png beside the markdown)
  threads=N                CPU threads per run (default: all cores)            (--threads)
  device=N                 the runs' device id (CUDA for torch, NPU for acl)   (--device)
  quiet=0|1                1: no progress display, only the summary lines      (--quiet)

examples:
  scripts/benchmark.sh
  scripts/benchmark.sh bs=1 configs=onnxruntime:fp32 loop=10
  scripts/benchmark.sh weights=./UNet.pth bs=1,4,8,16,32,64
  scripts/benchmark.sh bs=1,2 rounds=3 loop=3 publish=1
  scripts/benchmark.sh configs=torch:fp32,torch:fp16 max_seconds=none
  scripts/benchmark.sh bs=1 configs=onnxruntime:fp32,openvino:fp32,openvino:bf16,openvino:int8 rounds=5
USAGE
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "error: $*" >&2; exit 2; }

# key -> flag of python3 -m unet_infer.speed (an option left empty: no flag); quiet, bare, publish: 0|1, below
declare -A FLAG=([bs]=--batchsizes [configs]=--configs [max_seconds]=--max-seconds [loop]=--loop
                 [rounds]=--rounds [warmup]=--warmup
                 [weights]=--weights [width]=--width [size]=--size [workdir]=--workdir [markdown]=--markdown
                 [plot]=--plot [threads]=--threads [device]=--device [quiet]= [bare]= [publish]=)
declare -A VALUE=([workdir]=./work/bench [quiet]=0 [bare]=1 [publish]=0)
for arg in "$@"; do
    if [[ "$arg" == -h || "$arg" == --help || "$arg" == help ]]; then usage; exit 0; fi
    key=${arg%%=*}
    [[ "$arg" == *=* && -n "${FLAG[$key]+set}" ]] || die "unknown option '$arg' (options are key=value; see scripts/benchmark.sh --help)"
    VALUE[$key]=${arg#*=}
done
for key in quiet bare publish; do
    [[ "${VALUE[$key]}" == [01] ]] || die "$key must be 0 or 1, got '${VALUE[$key]}'"
done
if [[ "${VALUE[publish]}" == 1 ]]; then
    [[ -z "${VALUE[markdown]:-}" ]] || die "publish=1 writes the repository's BENCHMARKS.md, markdown= another file: give one"
    VALUE[markdown]="$ROOT/BENCHMARKS.md"
fi

cmd=("$PYTHON" -m unet_infer.speed)
for key in bs configs max_seconds loop rounds warmup weights width size workdir markdown plot threads device; do
    if [[ -n "${VALUE[$key]:-}" ]]; then cmd+=("${FLAG[$key]}" "${VALUE[$key]}"); fi
done
if [[ "${VALUE[quiet]}" == 1 ]]; then cmd+=(--quiet); fi
if [[ "${VALUE[bare]}" == 0 ]]; then cmd+=(--no-bare); fi

# The command line as typed goes into the markdown section beside the python3 command it ran.
UNET_BENCH_COMMAND="scripts/benchmark.sh"
for arg in "$@"; do  # as typed: quoted only where the shell needs it (printf %q also escapes commas)
    if [[ "$arg" =~ ^[A-Za-z0-9_=:,./@+-]+$ ]]; then UNET_BENCH_COMMAND+=" $arg"
    else UNET_BENCH_COMMAND+=" $(printf '%q' "$arg")"; fi
done
export UNET_BENCH_COMMAND

echo "[benchmark] ${cmd[*]}"
exec "${cmd[@]}"

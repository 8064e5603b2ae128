#!/usr/bin/env bash
# The CUDA paths on a CUDA GPU, in one command bounded in time (8 minutes by default): the tests that
# need CUDA, the main job with backend=torch precision=fp16, and the benchmark's GPU rows into
# BENCHMARKS.md. Every step, budget and verdict is python3 -m unet_infer.gpu_check's (see --help):
# this script only runs it from the repository.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m unet_infer.gpu_check "$@"

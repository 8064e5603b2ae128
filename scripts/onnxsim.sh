#!/usr/bin/env bash
# Stage 3a: simplify the exported ONNX model with onnxsim, keeping the batch axis dynamic.
#
# The guide's command is
#   python3 -m onnxsim --dynamic-input-shape --input-shape="1,3,572,572" UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx
# which, with onnxsim >= 0.4, pins the batch axis to 1. This wrapper runs the same simplification
# with the batch kept dynamic, checks the result and writes it only when it is sound
# (python3 -m unet_infer.simplify --help says how).
#
# usage: scripts/onnxsim.sh INPUT.onnx OUTPUT.onnx [SIZE]
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# UNET_INFER_PROG: the name --help and the errors show
UNET_INFER_PROG=scripts/onnxsim.sh exec "${PYTHON:-python3}" -m unet_infer.simplify "$@"

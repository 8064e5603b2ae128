#!/usr/bin/env bash
# Stage 3a: simplify the exported ONNX model with onnxsim, keeping the batch axis dynamic.
#
# The guide's command is
#   python3 -m onnxsim --dynamic-input-shape --input-shape="1,3,572,572" UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx
# With onnxsim >= 0.4 "--input-shape" means "--overwrite-input-shape" and pins the batch to 1
# (harmless for atc, which sets its own shape, but not a dynamic model). This wrapper runs the
# same simplification with "--test-input-shape", which keeps the batch axis dynamic, checks the
# result, and writes the output only when everything succeeded. A failure fails the stage: there
# is no fallback to the unsimplified model.
set -euo pipefail

usage() {
    cat <<USAGE
usage: scripts/onnxsim.sh INPUT.onnx OUTPUT.onnx [SIZE]

Simplify INPUT.onnx (batch axis dynamic) into OUTPUT.onnx with onnxsim.
  SIZE   input height and width used to test the simplified model (default: 572)

example:
  scripts/onnxsim.sh UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx
USAGE
}

if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then usage; exit 0; fi
if [[ $# -lt 2 || $# -gt 3 ]]; then usage >&2; exit 2; fi
src=$1
dst=$2
size=${3:-572}
PYTHON=${PYTHON:-python3}

[[ -f "$src" ]] || { echo "error: $src: ONNX model not found" >&2; exit 2; }
[[ "$size" =~ ^[0-9]+$ ]] || { echo "error: size must be a whole number, got '$size'" >&2; exit 2; }
[[ -d "$(dirname -- "$dst")" ]] || { echo "error: $(dirname -- "$dst"): output folder not found" >&2; exit 2; }
"$PYTHON" -c "import onnxsim" 2>/dev/null || {
    echo "error: onnxsim is not installed (pip install -r requirements.txt)" >&2; exit 2; }

tmp=$(mktemp "$(dirname -- "$dst")/.$(basename -- "$dst").XXXXXX.tmp")
chmod 644 -- "$tmp"
log="$dst.log"
trap 'rm -f -- "$tmp"' EXIT

echo "[INFO] onnxsim: $src -> $dst (test shape 1,3,$size,$size; log in $log)"
if ! "$PYTHON" -m onnxsim "$src" "$tmp" --test-input-shape "1,3,$size,$size" \
        --external-data-threshold 2GB >"$log" 2>&1; then
    echo "error: onnxsim failed on $src (see $log):" >&2
    tail -n 5 "$log" >&2
    exit 1
fi

# The simplified model must be one self-contained file (onnxsim saves models over its threshold,
# 100 MB by default, with their weights beside them), load, keep the dynamic batch axis and keep
# the input/output names.
"$PYTHON" - "$tmp" "$src" <<'PY'
import sys
import onnx

simplified, source = sys.argv[1], sys.argv[2]
try:
    model = onnx.load(simplified, load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        sys.exit(f"error: onnxsim wrote the weights of {source} to a separate file; expected one .onnx file")
    onnx.checker.check_model(model)
except Exception as exc:  # noqa: BLE001 - any failure here means onnxsim produced no usable model
    sys.exit(f"error: onnxsim output for {source} is not a valid ONNX model: {exc}")
names = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
batch = model.graph.input[0].type.tensor_type.shape.dim[0]
if batch.HasField("dim_value"):
    sys.exit(f"error: onnxsim pinned the batch axis of {source} to {batch.dim_value}")
print(f"[INFO] simplified: {len(model.graph.node)} nodes, inputs {names[0]}, outputs {names[1]}")
PY
grep -E '^\| (MACs|FLOPs) ' "$log" | sed -E 's/ +\|/ |/g; s/^/[INFO] /' || true
mv -f -- "$tmp" "$dst"
trap - EXIT
echo "[INFO] wrote $dst"

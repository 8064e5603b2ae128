"""Stage 3a: simplify the exported ONNX model with onnxsim, keeping the batch axis dynamic.

    python3 -m unet_infer.simplify UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx
    scripts/onnxsim.sh UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx               (the same, from the shell)

The guide's command is
    python3 -m onnxsim --dynamic-input-shape --input-shape="1,3,572,572" UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx
With onnxsim >= 0.4, "--input-shape" means "--overwrite-input-shape" and pins the batch to 1
(harmless for atc, which sets its own shape, but not for a dynamic-batch model). This runs the
same simplification with "--test-input-shape", which keeps the batch axis dynamic, then checks
that the result is one self-contained, valid file that keeps the dynamic batch, and writes it
only when all of that holds. A failure fails the stage: there is
no fallback to the unsimplified model. onnxsim's own report goes to OUTPUT.log (the cost per
image is counted by the export stage).
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

from . import cli
from .cli import UserError
from .formats import DEFAULT_SIZE, atomic_path
from .onnxfile import batch_is_dynamic, load_onnx, refuse_overwrite

log = logging.getLogger(__name__)

def simplify(src, dst, size=DEFAULT_SIZE):
    """Run onnxsim on ``src`` and write ``dst`` (checked, atomically); returns ``dst``."""
    import onnx
    src, dst = Path(src), Path(dst)
    load_onnx(src, weights=False)  # a missing or foreign file: its own error, before onnxsim runs
    refuse_overwrite(src, dst)
    log_path = Path(f"{dst}.log")
    with atomic_path(dst) as tmp:  # renamed to dst at the end of the block, with the umask's mode
        cmd = [sys.executable, "-m", "onnxsim", str(src), tmp, "--test-input-shape", f"1,3,{size},{size}",
               "--external-data-threshold", "2GB"]
        log.info("onnxsim: %s -> %s (test shape 1,3,%d,%d; log in %s)", src, dst, size, size, log_path)
        with open(log_path, "w", encoding="utf-8") as fh:
            status = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
        report = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        if status:
            tail = "; ".join(line.strip() for line in report[-3:] if line.strip())
            raise UserError(f"onnxsim failed on {src} (see {log_path}): {tail}")
        model = load_onnx(tmp, weights=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            raise UserError(f"onnxsim wrote the weights of {src} to a separate file; expected one .onnx file")
        try:
            onnx.checker.check_model(tmp)
        except onnx.checker.ValidationError as exc:
            raise UserError(f"onnxsim output for {src} is not a valid ONNX model: {cli.first_line(exc)}") from None
        if not batch_is_dynamic(model):
            raise UserError(f"onnxsim pinned the batch axis of {src}")
        log.info("simplified: %d nodes", len(model.graph.node))
    return dst


PROG = "python3 -m unet_infer.simplify"


def main(argv=None):
    """The command, named in --help and errors as scripts/onnxsim.sh, its caller, names it in UNET_INFER_PROG
    (taken out of the environment: no child inherits it)."""
    parser = cli.parser(os.environ.pop("UNET_INFER_PROG", "") or PROG, __doc__)
    parser.add_argument("input", help="the exported model (UNet_dynamic_bs.onnx)")
    parser.add_argument("output", help="the simplified model to write (UNet_dynamic_sim.onnx)")
    parser.add_argument("size", nargs="?", type=cli.int_at_least(16), default=DEFAULT_SIZE,
                        help="input height and width used to test the simplified model")
    args = parser.parse_args(argv)
    simplify(args.input, args.output, args.size)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

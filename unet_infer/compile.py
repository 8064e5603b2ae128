"""Compile a dynamic-batch model for one batch size: the CPU (and any backend's) counterpart of the
guide's atc step. The backend decides what compiling means (``--backend``, else the output's suffix):

    python3 -m unet_infer.compile --model UNet_dynamic_sim.onnx --batchsize 8 --output UNet_bs8.onnx
    python3 -m unet_infer.compile --model UNet_dynamic_sim.onnx --batchsize 8 --output UNet_bs8.xml

- onnxruntime (``.onnx``): the batch axis fixed, shapes inferred, onnxruntime's full graph
  optimisations saved in the file (tuned to this machine's CPU and onnxruntime version, like an
  .om file), then one zero batch run as a check;
- openvino (``.xml``): an OpenVINO IR (the .xml and its .bin) with a static batch x C x size x size
  shape, float weights kept in fp32 (one IR serves fp32 and bf16), then one zero batch run as a check;
- acl (``.om``): the guide's atc command line through scripts/atc.sh (needs CANN; ``--chip``).

An INT8 model is compiled the same way from the quantised model (``UNet_int8.onnx`` or ``.xml``).
A model whose batch axis the guide's onnxsim line pinned to 1 is re-batched, as atc takes the batch
from its own ``--input_shape``: where the graph allows it, axis 0 is set to ``--batchsize`` and the
check run compares N different random images with the batch-1 model's outputs on the first and last.
"""

from . import cli
from .backends import all_backends, backend_for_model, get_backend, names, usable_backend
from .cli import UserError, run_cli
from .formats import DEFAULT_SIZE
from .session import backend_options


def build_parser():
    parser = cli.parser("python3 -m unet_infer.compile", __doc__)
    add = parser.add_argument
    add("--model", required=True, help="the dynamic-batch model (e.g. UNet_dynamic_sim.onnx or UNet_int8.onnx), or "
                                        "one pinned to batch 1 by onnxsim --input-shape (re-batched and checked)")
    add("--batchsize", type=cli.int_at_least(1), required=True, help="the batch size to fix")
    add("--output", required=True, help="the compiled model (e.g. UNet_bs8.onnx, UNet_bs8.xml, UNet_bs8.om)")
    add("--backend", choices=names(), help="without it: from the suffix of --output")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="input height = width")
    add("--threads", type=cli.int_at_least(1), help="threads for the check run (without it: the engine's own)")
    for cls in all_backends():  # each backend's own flags (acl's --chip)
        for option in cls.compile_options:
            option.add_to(parser)
    add(*cli.flag("no_check"), dest="no_check", action="store_true",
        help="skip the test run of one zero batch (it costs as much as one batch of inference; a re-batched "
             "model's comparison with the batch-1 model is skipped too)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    name = args.backend or backend_for_model(args.output)
    cls = get_backend(name)
    if cls.source != "onnx":
        raise UserError(f"the {name} backend runs the checkpoint itself; there is nothing to compile")
    options = backend_options(args, cls, "compile_options")
    usable_backend(name)
    cls.compile(args.model, args.output, args.batchsize, threads=args.threads, size=args.size,
                check=not args.no_check, **options)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

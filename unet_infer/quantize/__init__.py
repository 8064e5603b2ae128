"""INT8 post-training quantisation of the simplified UNet, by the backend that will run it.

    python3 -m unet_infer.quantize --model UNet_dynamic_sim.onnx --calib prep_bin --output UNet_int8.onnx

(the same as ``--backend onnxruntime --n-calib 16``; add ``--size S`` when the model's input size
is dynamic). The activation ranges are calibrated on up to --n-calib preprocessed images of
--calib (``<stem>.bin``, raw float32 CHW, as preprocess_unet_pth.py writes them; or, in a folder
of images, the images decoded as preprocessing does, so a streamed run writes no .bin files);
natural order, evenly spaced when there are more. The recipe of each backend:
onnxruntime (QDQ, per-channel weights, up-sampling as Gemm, INT8 padding) and
openvino (NNCF post-training quantisation to an OpenVINO IR, ``--output M_int8.xml``).
Both first fold the shape arithmetic of a raw export, so that a model
straight from unet_pth2onnx.py quantises to the same graph as the simplified one.

After quantising, one calibration image is run through both models: the report gives the node
count, the relative error of the INT8 logits (max |int8 - fp32| / max |fp32|) and the fraction of
pixels whose class (car: logit > 0) is the same as with fp32.
"""

import importlib
import logging
from pathlib import Path

import numpy as np

from .. import cli
from ..backends import backend_for_model, cpu_flags, get_backend, names, usable_backend
from ..cli import UserError, first_line
from ..metrics import relative_error
from ..data import DECODE_ERRORS, load_image
from ..formats import IMAGE_SUFFIXES, bin_nbytes, list_files, read_bin
from ..progress import set_quiet

log = logging.getLogger(__name__)


def int8_saturates(flags=None):
    """True on a CPU whose INT8 dot products (``u8 x s8`` pairs, ``vpmaddubsw``) are summed in 16 bits
    and can saturate: AVX2 without VNNI or AMX. There both recipes quantise weights to 7 bits."""
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_flags() if flags is None else flags)


def recipe_options(flags=None):
    """What of the INT8 recipe depends on this machine: part of a quantised model's manifest (the
    driver and the speed tables re-quantise when it changes)."""
    return {"weight_bits": 7 if int8_saturates(flags) else 8}


def fold_shape_arithmetic(model, size, source="the model"):
    """``(model, folded)``: a raw export computes its up-sampling pads at run time (Shape -> Gather
    -> Sub -> Div -> ... -> Pad, 20 Shape nodes); quantised as it is, its DequantizeLinear and
    Transpose nodes feed that arithmetic and the INT8 model runs 7-13% slower. Such a model is
    simplified first, as stage 3a does (onnxsim, tested at 1 x C x ``size`` x ``size``, so the
    batch axis stays dynamic; in this process, which has its imports already); a model without
    shape arithmetic is returned as it is."""
    from ..onnxfile import batch_is_dynamic, count_ops, dims, graph_inputs
    shapes = count_ops(model).get("Shape", 0)
    if not shapes:
        return model, False
    import onnxsim
    value = graph_inputs(model)[0]
    try:
        with cli.stderr_quiet():  # onnxsim's C++ notes on the nodes it leaves alone, as stage 3a logs them apart
            folded, ok = onnxsim.simplify(model, test_input_shapes={value.name: [1, dims(value)[1], size, size]})
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{source}: onnxsim cannot fold its shape arithmetic ({first_line(exc)}); "
                        f"simplify it with scripts/onnxsim.sh first") from None
    if not ok or not batch_is_dynamic(folded):
        raise UserError(f"{source}: onnxsim could not fold its shape arithmetic with the batch axis dynamic; "
                        f"simplify it with scripts/onnxsim.sh first")
    log.info("folded the shape arithmetic of %s (%d Shape nodes, %d nodes left) before quantising", source,
             shapes, len(folded.graph.node))
    return folded, True


def select_evenly(items, n):
    """All of ``items`` when there are at most ``n``, else ``n`` of them evenly spaced (first and last kept)."""
    items = list(items)
    if len(items) <= n:
        return items
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def calibration_files(calib_dir, n_calib, channels, size):
    """Up to ``n_calib`` files of ``calib_dir`` (natural order, evenly spaced): its preprocessed
    ``.bin`` images (sizes checked), or when it holds none, its images (decoded as preprocessing does)."""
    nbytes = bin_nbytes(channels, size)
    files = list_files(calib_dir, (".bin",), what="calibration")
    if not files:
        files = list_files(calib_dir, IMAGE_SUFFIXES, what="calibration")
        if not files:
            raise UserError(f"{calib_dir}: no .bin files or images ({', '.join(IMAGE_SUFFIXES)}) to calibrate with")
        return select_evenly(files, n_calib)
    chosen = select_evenly(files, n_calib)
    for path in chosen:
        found = path.stat().st_size
        if found != nbytes:
            raise UserError(f"{path}: {found} bytes, expected {nbytes} (one {channels} x {size} x {size} image, "
                            f"the model's input)")
    return chosen


def load_calibration(path, channels, size):
    """One calibration image as a 1 x C x S x S float32 array (a .bin file, or an image decoded)."""
    path = Path(path)
    if path.suffix.lower() == ".bin":
        return read_bin(path, shape=(1, channels, size, size))
    try:
        return load_image(path, size)[None]
    except DECODE_ERRORS as exc:
        raise UserError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None


def compare_outputs(reference, candidate, image):
    """The report's check: the INT8 logits ``candidate`` against fp32's ``reference`` on ``image``."""
    err, agree = relative_error(candidate, reference), float(np.mean((reference > 0) == (candidate > 0)))
    log.info("%s: INT8 vs fp32 logits: relative error %.3g, sign agrees on %.4f%% of pixels", Path(image).name,
             err, 100 * agree)
    return {"check_image": str(image), "relative_error": err, "sign_agreement": agree}


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.quantize", __doc__)
    add = parser.add_argument
    add("--model", required=True, help="the fp32 ONNX model (e.g. UNet_dynamic_sim.onnx)")
    add("--calib", required=True, help="folder of preprocessed images (<stem>.bin), or of images, to calibrate on")
    add("--output", required=True, help="the INT8 model to write (e.g. UNet_int8.onnx)")
    quantizing = [n for n in names() if get_backend(n).quantized]
    add("--backend", choices=quantizing, metavar="NAME",
        help=f"the backend that will run the model: {', '.join(quantizing)} (without it: from the suffix of "
             f"--output, .onnx or .xml)")
    add(*cli.flag("n_calib"), dest="n_calib", type=cli.int_at_least(1), default=16,
        help="calibrate on at most this many images (evenly spaced)")
    add("--size", type=cli.int_at_least(16), default=None,
        help="input height and width (without it: read from the model input)")
    add("--threads", type=cli.int_at_least(1), default=None,
        help="threads for the fp32 / INT8 check run (without it: the engine's own)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    name = args.backend or backend_for_model(args.output)
    cls = get_backend(name)
    if not cls.quantized:
        raise UserError(f"the {name} backend has no INT8 quantiser; use --backend "
                        f"{' or '.join(n for n in names() if get_backend(n).quantized)}")
    usable_backend(name)
    report = importlib.import_module(cls.quantizer).quantize_model(args.model, args.calib, args.output,
                                                                   n_calib=args.n_calib, size=args.size,
                                                                   threads=args.threads)
    print(f"{report['output']}: INT8, {report['nodes']} nodes, calibrated on {report['calibration_images']} "
          f"image(s); vs fp32 on {report['check_image']}: relative error {report['relative_error']:.3g}, "
          f"sign agreement {100 * report['sign_agreement']:.3f}%")

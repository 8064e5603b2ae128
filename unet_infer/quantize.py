"""Quantise the simplified UNet to INT8 for the CPU: ONNX Runtime static quantisation, QDQ format.

    python3 -m unet_infer.quantize --model UNet_dynamic_sim.onnx --calib prep_bin --output UNet_int8.onnx

(the same as ``--n-calib 16 --method minmax``; add ``--size S`` when the model's input size is dynamic)

The recipe, chosen by measuring on x86 with VNNI/AMX (onnxruntime's CPU provider, 2 threads):
- activations QUInt8 (asymmetric), weights QInt8 per output channel (symmetric): the u8 x s8
  kernels of onnxruntime, with every ReLU folded away. QInt8 activations were 1.4x slower (float
  ReLUs between DequantizeLinear/QuantizeLinear pairs), per-tensor weights no faster;
- the model is taken to opset 13 (per-channel DequantizeLinear and INT8 MaxPool need it);
- the four up-sampling ConvTranspose (2 x 2, stride 2) become an equivalent channels-last Gemm:
  onnxruntime has no INT8 ConvTranspose and would run them in float (23% of the INT8 time);
- after quantising, the zero-padding Pads work on the INT8 tensor (padding with the zero point)
  instead of dequantise -> pad -> quantise.
The activation ranges are calibrated on up to --n-calib preprocessed images of --calib
(``<stem>.bin``, raw float32 CHW, as preprocess_unet_pth.py writes them; natural order, evenly
spaced when there are more), one image at a time. Shapes are inferred first (``quant_pre_process``);
the batch axis stays dynamic, so ``python3 -m unet_infer.compile`` can fix it afterwards.

After quantising, one calibration image is run through both models: the report gives the node
count, the relative error of the INT8 logits (max |int8 - fp32| / max |fp32|) and the fraction of
pixels whose class (car: logit > 0) is the same as with fp32.
"""

import argparse
import contextlib
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from .compile import load_onnx
from .errors import HelpFormatter, UserError, run_cli
from .export import relative_error
from .formats import atomic_path, input_nbytes, list_files, read_bin
from .progress import progress, set_quiet

log = logging.getLogger(__name__)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIB_SUFFIXES = (".bin",)
# Opset 13: DequantizeLinear's axis (per-channel weights) and uint8 MaxPool (kept in INT8 by ORT) need it.
QUANT_OPSET = 13

# The recipe (see the module docstring).
ACTIVATION_TYPE = QuantType.QUInt8
WEIGHT_TYPE = QuantType.QInt8
PER_CHANNEL = True
EXTRA_OPTIONS = {
    "ActivationSymmetric": False,
    "WeightSymmetric": True,
    # One image at a time through the calibration model: the histogram methods otherwise keep every
    # intermediate tensor of every image in memory (about 2 GB per 572 x 572 image).
    "CalibStridedMinMax": 1,
}


def _attribute(node, name, default=None):
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _plain_upsampling(node, weight):
    """The block size k when ``node`` is a ConvTranspose with a k x k kernel, stride k, no padding,
    dilation 1 and one group (UNet's up-sampling; its output tiles never overlap), else None."""
    if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
        return None
    k = int(weight.shape[2])
    if (list(_attribute(node, "kernel_shape", [k, k])) != [k, k] or list(_attribute(node, "strides", [1, 1])) != [k, k]
            or _attribute(node, "group", 1) != 1 or any(_attribute(node, "pads", []))
            or any(_attribute(node, "output_padding", [])) or any(d != 1 for d in _attribute(node, "dilations", []))
            or _attribute(node, "auto_pad", "NOTSET") != "NOTSET" or _attribute(node, "output_shape") is not None):
        return None
    return k


def _static_shapes(model):
    """{tensor name: [dims]} after ONNX shape inference (None for a dynamic dim)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in values}


def upsampling_as_gemm(model):
    """Rewrite UNet's up-sampling ConvTranspose (k x k kernel, stride k) as a Gemm on channels-last
    pixels; returns how many were rewritten (those whose input height and width are known).

    The values are the same: out[co, k*i+a, k*j+b] = sum_ci x[ci, i, j] * W[ci, co, a, b] + bias[co] is
    Transpose(NHWC) -> Reshape(N*H*W, Cin) -> Gemm(W as Cin x (a, b, co), bias tiled) ->
    Reshape(N, H, W, k, k, Cout) -> Transpose(N, H, k, W, k, Cout) -> Reshape(N, k*H, k*W, Cout) ->
    Transpose(NCHW). Why: onnxruntime's CPU provider has no INT8 ConvTranspose, so left alone the four
    of them run in float (a quarter of the INT8 UNet's time); the Gemm becomes an INT8 QGemm, and as
    the QLinearConvs around it run channels-last too, the outer Transposes cancel out and the inner
    one moves whole runs of k*Cout bytes.
    """
    weights = {init.name: init for init in model.graph.initializer}
    shapes = None
    nodes, replaced, rewritten = [], set(), 0
    for node in model.graph.node:
        k = None
        if (node.op_type == "ConvTranspose" and len(node.input) >= 2 and node.input[1] in weights
                and (len(node.input) < 3 or not node.input[2] or node.input[2] in weights)):
            weight = onnx.numpy_helper.to_array(weights[node.input[1]])
            k = _plain_upsampling(node, weight)
        if k is not None:
            shapes = shapes if shapes is not None else _static_shapes(model)
            dims = shapes.get(node.input[0], [])
            if len(dims) != 4 or dims[2] is None or dims[3] is None:
                log.info("%s: input height and width unknown, ConvTranspose left as it is", node.name)
                k = None
        if k is None:
            nodes.append(node)
            continue
        cin, cout = weight.shape[:2]
        height, width = dims[2], dims[3]
        if len(node.input) > 2 and node.input[2]:
            bias = onnx.numpy_helper.to_array(weights[node.input[2]])
            replaced.add(node.input[2])
        else:
            bias = np.zeros(cout, weight.dtype)
        replaced.add(node.input[1])
        name, out = node.name or node.output[0], node.output[0]

        def constant(suffix, array):
            return _add_initializer(model, f"{out}_{suffix}", array)

        gemm_weight = constant("gemm_weight", np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(cin, -1)))
        gemm_bias = constant("gemm_bias", np.tile(bias, k * k))
        steps = [
            ("Transpose", [node.input[0]], {"perm": [0, 2, 3, 1]}),
            ("Reshape", [constant("rows_shape", np.array([-1, cin], np.int64))], {}),
            ("Gemm", [gemm_weight, gemm_bias], {}),
            ("Reshape", [constant("tiles_shape", np.array([-1, height, width, k, k, cout], np.int64))], {}),
            ("Transpose", [], {"perm": [0, 1, 3, 2, 4, 5]}),
            ("Reshape", [constant("nhwc_shape", np.array([-1, height * k, width * k, cout], np.int64))], {}),
            ("Transpose", [], {"perm": [0, 3, 1, 2]}),
        ]
        previous = None
        for i, (op, inputs, attrs) in enumerate(steps):
            inputs = inputs if previous is None else [previous] + inputs
            result = out if i == len(steps) - 1 else f"{out}_as_gemm_{i}"
            nodes.append(onnx.helper.make_node(op, inputs, [result], name=f"{name}_as_gemm_{i}_{op}", **attrs))
            previous = result
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        _drop_unused(model, replaced)
    return rewritten


def _drop_unused(model, names):
    """Remove the initializers (and graph inputs) among ``names`` that no node reads any more."""
    used = {name for node in model.graph.node for name in node.input}
    unused = set(names) - used
    kept = [init for init in model.graph.initializer if init.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    kept_inputs = [v for v in model.graph.input if v.name not in unused]
    del model.graph.input[:]
    model.graph.input.extend(kept_inputs)


def pad_in_int8(model):
    """Fold DequantizeLinear -> Pad(constant 0) -> QuantizeLinear (same per-tensor scale and zero point)
    into one Pad of the INT8 tensor by its zero point; returns how many were folded.

    The quantiser gives a zero-padding Pad the quantisation of its input, but onnxruntime keeps the
    pair and pads in float; padding the INT8 values with the zero point gives the same values.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    readers = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    weights = {init.name: init for init in model.graph.initializer}
    outputs = {v.name for v in model.graph.output}
    folded, drop = 0, set()
    for node in model.graph.node:
        if (node.op_type != "Pad" or _attribute(node, "mode", "constant") != "constant" or len(node.input) < 2
                or (len(node.input) > 2 and node.input[2]) or node.output[0] in outputs):
            continue  # (an explicit padding value is left alone: not worth checking that it is zero)
        dq = producers.get(node.input[0])
        after = readers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or len(after) != 1:
            continue
        quantize = after[0]
        scale = weights.get(dq.input[1])
        if (quantize.op_type != "QuantizeLinear" or list(quantize.input[1:3]) != list(dq.input[1:3])
                or scale is None or int(np.prod(scale.dims)) != 1):
            continue
        pads = node.input[1]
        del node.input[:]
        node.input.extend([dq.input[0], pads, dq.input[2]])
        node.output[0] = quantize.output[0]
        drop.add(id(quantize))
        if readers.get(dq.output[0]) == [node] and dq.output[0] not in outputs:
            drop.add(id(dq))
        folded += 1
    if folded:
        kept = [n for n in model.graph.node if id(n) not in drop]
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return folded


def _add_initializer(model, name, array):
    taken = {init.name for init in model.graph.initializer}
    unique, n = name, 1
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    model.graph.initializer.append(onnx.numpy_helper.from_array(array, unique))
    return unique


def opset_of(model):
    """The default-domain opset version the model imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def model_input(model, source, size=None):
    """(input name, channels, size) of the model's single N x C x S x S image input.

    ``size`` is taken from the model when its height and width are fixed (a different ``size`` is
    a :class:`UserError`); a model with dynamic height and width needs ``size``.
    """
    weights = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in weights]
    if len(inputs) != 1:
        raise UserError(f"{source}: {len(inputs)} inputs, expected one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise UserError(f"{source}: input {inputs[0].name} has {len(dims)} axes, expected N x C x S x S")
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if fixed[1] is None:
        raise UserError(f"{source}: input {inputs[0].name} has a dynamic channel axis")
    if fixed[2] is not None and fixed[3] is not None:
        if fixed[2] != fixed[3]:
            raise UserError(f"{source}: input {inputs[0].name} is {fixed[2]} x {fixed[3]}, expected a square image")
        if size is not None and size != fixed[2]:
            raise UserError(f"--size {size}: the model's input is {fixed[2]} x {fixed[3]}")
        size = fixed[2]
    elif size is None:
        raise UserError(f"{source}: input {inputs[0].name} has a dynamic height and width; give --size")
    if size < 1:
        raise UserError(f"--size {size}: must be at least 1")
    return inputs[0].name, fixed[1], size


def select_evenly(items, n):
    """All of ``items`` when there are at most ``n``, else ``n`` of them evenly spaced (first and last kept)."""
    items = list(items)
    if len(items) <= n:
        return items
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def calibration_files(calib_dir, n_calib, nbytes):
    """Up to ``n_calib`` .bin files of ``calib_dir`` (natural order, evenly spaced), sizes checked."""
    if n_calib < 1:
        raise UserError(f"--n-calib {n_calib}: must be at least 1")
    files = list_files(calib_dir, CALIB_SUFFIXES, what="calibration")
    if not files:
        raise UserError(f"{calib_dir}: no .bin files to calibrate with")
    chosen = select_evenly(files, n_calib)
    for path in chosen:
        size = path.stat().st_size
        if size != nbytes:
            raise UserError(f"{path}: {size} bytes, expected {nbytes} (one image the size of the model input)")
    return chosen


class BinCalibrationReader(CalibrationDataReader):
    """Feeds one preprocessed image (1 x C x S x S) per ``get_next``, from a list of .bin files."""

    def __init__(self, files, input_name, shape, quiet=None):
        self.files = list(files)
        self.input_name = input_name
        self.shape = tuple(shape)
        self.quiet = quiet
        self.start, self.end = 0, len(self.files)
        self.position = 0
        self.bar = None

    def __len__(self):
        return len(self.files)

    def set_range(self, start_index, end_index):
        self.start, self.end = start_index, min(end_index, len(self.files))
        self.position = self.start

    def rewind(self):
        self.position = self.start

    def get_next(self):
        if self.bar is None:
            self.bar = progress(total=len(self.files), desc="calibration", unit="image", quiet=self.quiet)
        if self.position >= self.end:
            return None
        path = self.files[self.position]
        self.position += 1
        array = read_bin(path, shape=(1,) + self.shape, expected_bytes=int(np.prod(self.shape)) * 4)
        self.bar.update(1)
        if self.position == len(self.files):
            self.bar.close()
        return {self.input_name: array}


def _session(path, threads=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_outputs(reference, candidate):
    """(relative error, fraction of pixels whose sign agrees) of ``candidate`` logits vs ``reference``."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise UserError(f"INT8 output shape {candidate.shape} differs from fp32's {reference.shape}")
    agree = float(np.mean((reference > 0) == (candidate > 0))) if reference.size else 1.0
    return relative_error(candidate, reference), agree


def count_ops(model):
    return Counter(node.op_type for node in model.graph.node)


def batch_is_dynamic(model):
    """True when axis 0 of the first graph input and output is not a fixed number."""
    values = [v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}][:1]
    values += list(model.graph.output[:1])
    return all(v.type.tensor_type.shape.dim and not v.type.tensor_type.shape.dim[0].HasField("dim_value")
               for v in values)


def quantize_model(model, calib_dir, output, n_calib=16, method="minmax", size=None, threads=None,
                   quiet=None, activation_type=ACTIVATION_TYPE, weight_type=WEIGHT_TYPE,
                   per_channel=PER_CHANNEL, extra_options=None, nodes_to_exclude=None,
                   op_types_to_quantize=None, preprocess=True, rewrite_graph=True):
    """Quantise ``model`` to ``output`` (INT8, QDQ), calibrated on ``calib_dir``; returns a report dict.

    The keyword arguments after ``quiet`` override the recipe (for experiments); the defaults are the
    recipe this module stands for.
    """
    model_path, output = Path(model), Path(output)
    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if output.is_dir():
        raise UserError(f"{output}: is a folder, expected an .onnx file name")
    if not output.parent.is_dir():
        raise UserError(f"{output.parent}: output folder not found")
    if output.exists() and output.resolve() == model_path.resolve():
        raise UserError(f"{output}: the output must not overwrite the source model")
    fp32 = load_onnx(model_path)
    input_name, channels, size = model_input(fp32, model_path, size)
    files = calibration_files(calib_dir, n_calib, input_nbytes(size, channels))
    options = dict(EXTRA_OPTIONS, **(extra_options or {}))
    log.info("%s: calibrating on %d image(s) of %s (%s), %s activations, %s weights%s", model_path, len(files),
             calib_dir, method, activation_type.name, weight_type.name, ", per channel" if per_channel else "")

    with tempfile.TemporaryDirectory(prefix="unet_quantize.") as tmp:
        source = Path(tmp) / "fp32.onnx"
        if opset_of(fp32) < QUANT_OPSET:
            log.info("converting %s from opset %d to %d", model_path, opset_of(fp32), QUANT_OPSET)
            fp32 = onnx.version_converter.convert_version(fp32, QUANT_OPSET)
        rewritten = upsampling_as_gemm(fp32) if rewrite_graph else 0
        if rewritten:
            log.info("rewrote %d ConvTranspose up-sampling node(s) as channels-last Gemm", rewritten)
        onnx.save(fp32, str(source))  # one self-contained file: side files of ORT land in tmp, not beside it
        del fp32
        # onnxruntime's quantisation tools print() their progress: keep stdout for our summary line.
        with contextlib.redirect_stdout(sys.stderr):
            if preprocess:
                prepared = Path(tmp) / "fp32_prep.onnx"
                quant_pre_process(str(source), str(prepared))
                source = prepared
        reader = BinCalibrationReader(files, input_name, (channels, size, size), quiet=quiet)
        with atomic_path(output) as dst, contextlib.redirect_stdout(sys.stderr):
            quantize_static(
                str(source), dst, reader,
                quant_format=QuantFormat.QDQ,
                activation_type=activation_type,
                weight_type=weight_type,
                per_channel=per_channel,
                calibrate_method=METHODS[method],
                nodes_to_exclude=list(nodes_to_exclude or []),
                op_types_to_quantize=op_types_to_quantize,
                extra_options=options,
            )
            int8 = onnx.load(dst)
            folded = pad_in_int8(int8) if rewrite_graph else 0
            if folded:
                log.info("padding %d tensor(s) in INT8", folded)
                onnx.save(int8, dst)
            if not batch_is_dynamic(int8):
                raise UserError(f"{model_path}: the quantised model lost the dynamic batch axis")
            image = read_bin(files[0], shape=(1, channels, size, size))
            want = _session(model_path, threads).run(None, {input_name: image})[0]
            got = _session(dst, threads).run(None, {input_name: image})[0]
    err, agree = compare_outputs(want, got)
    ops = count_ops(int8)
    report = {
        "output": str(output),
        "method": method,
        "calibration_images": len(files),
        "size": size,
        "nodes": sum(ops.values()),
        "rewritten_upsampling": rewritten,
        "int8_pads": folded,
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "dequantize_nodes": ops.get("DequantizeLinear", 0),
        "check_image": str(files[0]),
        "relative_error": err,
        "sign_agreement": agree,
    }
    log.info("wrote %s: %d nodes (%d QuantizeLinear, %d DequantizeLinear)", output, report["nodes"],
             report["quantize_nodes"], report["dequantize_nodes"])
    log.info("%s: INT8 vs fp32 logits: relative error %.3g, sign agrees on %.4f%% of pixels", files[0].name,
             err, 100 * agree)
    return report


class _Formatter(HelpFormatter):
    """Shows defaults, except where there is none to show (None, store_true) or the help says it."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.quantize", description=__doc__,
                                     formatter_class=_Formatter)
    parser.add_argument("--model", required=True, help="the fp32 ONNX model (e.g. UNet_dynamic_sim.onnx)")
    parser.add_argument("--calib", required=True, help="folder of preprocessed images (<stem>.bin) to calibrate on")
    parser.add_argument("--output", required=True, help="the INT8 ONNX model to write (e.g. UNet_int8.onnx)")
    parser.add_argument("--n-calib", "--n_calib", dest="n_calib", type=int, default=16,
                        help="calibrate on at most this many images (evenly spaced)")
    parser.add_argument("--method", choices=sorted(METHODS), default="minmax",
                        help="how activation ranges are calibrated")
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default: read from the model input)")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime threads for the fp32 / INT8 check run (default: its own)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_quiet(args.quiet)
    report = quantize_model(args.model, args.calib, args.output, n_calib=args.n_calib, method=args.method,
                            size=args.size, threads=args.threads)
    print(f"{report['output']}: INT8 (QDQ), {report['nodes']} nodes, calibrated ({report['method']}) on "
          f"{report['calibration_images']} image(s); vs fp32 on {Path(report['check_image']).name}: "
          f"relative error {report['relative_error']:.3g}, sign agreement {100 * report['sign_agreement']:.3f}%")


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""The onnxruntime INT8 recipe: static quantisation, QDQ format, for the CPU provider.

The recipe, chosen by measuring on x86 with VNNI/AMX (onnxruntime's CPU provider, 2 threads):
- activations QUInt8 (asymmetric), weights QInt8 per output channel (symmetric): the u8 x s8
  kernels of onnxruntime, with every ReLU folded away. QInt8 activations were 1.4x slower (float
  ReLUs between DequantizeLinear/QuantizeLinear pairs), per-tensor weights no faster;
- the model is taken to opset 13 (per-channel DequantizeLinear and INT8 MaxPool need it);
- the four up-sampling ConvTranspose (2 x 2, stride 2) become an equivalent channels-last Gemm:
  onnxruntime has no INT8 ConvTranspose and would run them in float (23% of the INT8 time);
- after quantising, the zero-padding Pads work on the INT8 tensor (padding with the zero point)
  instead of dequantise -> pad -> quantise;
- on a CPU without VNNI or AMX (AVX2 only), weights in 7 bits (``reduce_range``): there the
  ``u8 x s8`` products are summed in 16 bits and saturate with 8-bit weights (mean IoU of the
  bundled model on 672 real photos: 0.932 with 8 bits against fp32's 0.973). The INT8 model,
  like an .om, suits the machine that made it.
The min-max ranges are calibrated one image at a time (about 2 GB of intermediate tensors per
572 x 572 image). The batch axis stays dynamic, so ``python3 -m unet_infer.compile`` can fix it.
"""

import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import onnx
import onnx.version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..backends.onnxruntime_backend import cpu_session
from ..cli import UserError
from ..formats import atomic_path
from ..onnxfile import (batch_is_dynamic, count_ops, image_input, load_onnx, metadata, refuse_overwrite,
                        set_metadata)
from ..progress import progress
from . import calibration_files, compare_outputs, fold_shape_arithmetic, int8_saturates, load_calibration
from .graph import pad_in_int8, upsampling_as_gemm

log = logging.getLogger(__name__)

QUANT_OPSET = 13  # per-channel DequantizeLinear and INT8 MaxPool need it (module notes)


class CalibrationReader(CalibrationDataReader):
    """One image (1 x C x S x S) per ``get_next``, of the files in the range quantize_static sets."""

    def __init__(self, files, input_name, channels, size):
        self.files, self.input_name, self.channels, self.size = list(files), input_name, channels, size
        self.position, self.end = 0, len(self.files)
        self.bar = progress(total=len(self.files), desc="calibration", unit="image")

    def __len__(self):
        return len(self.files)

    def set_range(self, start_index, end_index):
        self.position, self.end = start_index, min(end_index, len(self.files))

    def get_next(self):
        if self.position >= self.end:
            return None
        array = load_calibration(self.files[self.position], self.channels, self.size)
        self.position += 1
        self.bar.update(1)
        if self.position == len(self.files):
            self.bar.close()
        return {self.input_name: array}


def quantize_model(model, calib_dir, output, n_calib=16, size=None, threads=None):
    """Quantise ``model`` to ``output`` (INT8, QDQ), calibrated on ``calib_dir`` (min-max); returns a report dict."""
    model_path, output = Path(model), Path(output)
    refuse_overwrite(model_path, output)
    fp32 = load_onnx(model_path)
    kept = metadata(fp32)
    dynamic = batch_is_dynamic(fp32)  # a batch pinned to 1 (the guide's onnxsim) stays so: compile re-batches it
    input_name, channels, size = image_input(fp32, model_path, size)
    files = calibration_files(calib_dir, n_calib, channels, size)
    reduce_range = int8_saturates()
    log.info("%s: calibrating on %d image(s) of %s (minmax), QUInt8 activations, QInt8 weights%s, per channel",
             model_path, len(files), calib_dir, " in 7 bits (no VNNI/AMX on this CPU)" if reduce_range else "")

    with tempfile.TemporaryDirectory(prefix="unet_quantize.") as tmp:
        source = Path(tmp) / "fp32.onnx"
        fp32, folded_shapes = fold_shape_arithmetic(fp32, size, model_path)
        opset = next((o.version for o in fp32.opset_import if o.domain in ("", "ai.onnx")), 1)
        if opset < QUANT_OPSET:
            log.info("converting %s from opset %d to %d", model_path, opset, QUANT_OPSET)
            fp32 = onnx.version_converter.convert_version(fp32, QUANT_OPSET)
        rewritten = upsampling_as_gemm(fp32)
        if rewritten:
            log.info("rewrote %d ConvTranspose up-sampling node(s) as channels-last Gemm", rewritten)
        onnx.save(fp32, str(source))  # one self-contained file: side files of ORT land in tmp, not beside it
        del fp32
        prepared = Path(tmp) / "fp32_prep.onnx"
        # onnxruntime's quantisation tools print() their progress: keep stdout for our summary line.
        with atomic_path(output) as dst, contextlib.redirect_stdout(sys.stderr):
            quant_pre_process(str(source), str(prepared))
            reader = CalibrationReader(files, input_name, channels, size)
            quantize_static(str(prepared), dst, reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                           "CalibStridedMinMax": 1})
            int8 = onnx.load(dst)
            folded = pad_in_int8(int8)
            if folded:
                log.info("padding %d tensor(s) in INT8", folded)
            set_metadata(int8, kept)
            onnx.save(int8, dst)
            if dynamic and not batch_is_dynamic(int8):
                raise UserError(f"{model_path}: the quantised model lost the dynamic batch axis")
            image = load_calibration(files[0], channels, size)
            want = cpu_session(model_path, threads).run(None, {input_name: image})[0]
            got = cpu_session(dst, threads, source=output).run(None, {input_name: image})[0]
    checked = compare_outputs(want, got, files[0])
    ops = count_ops(int8)
    report = {
        "output": str(output),
        "calibration_images": len(files),
        "size": size,
        "nodes": sum(ops.values()),
        "folded_shapes": folded_shapes,
        "rewritten_upsampling": rewritten,
        "weight_bits": 7 if reduce_range else 8,
        "int8_pads": folded,
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "dequantize_nodes": ops.get("DequantizeLinear", 0),
        **checked,
    }
    log.info("wrote %s: %d nodes (%d QuantizeLinear, %d DequantizeLinear)", output, report["nodes"],
             report["quantize_nodes"], report["dequantize_nodes"])
    return report

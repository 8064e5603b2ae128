"""The OpenVINO INT8 recipe: NNCF post-training quantisation of the simplified model to an IR.

The recipe and why (docs/openvino.md, "INT8 recipe"): ``nncf.quantize`` with preset PERFORMANCE,
target CPU, fast bias correction and min-max ranges from up to --n-calib images of --calib; a raw
export's shape arithmetic folded first; 7-bit weights on a CPU without VNNI or AMX
(:func:`overflow_fix`); the FakeQuantize before up1's and up2's zero Pad moved after it
(:func:`fake_quantize_after_pads`). The IR keeps a dynamic batch axis and the checkpoint's id in
its rt_info. The check run compares ONNX Runtime on the fp32 model with OpenVINO on the INT8 IR.
"""

import contextlib
import logging
import sys
import tempfile
from pathlib import Path

from ..backends.onnxruntime_backend import cpu_session
from ..backends.openvino_backend import OpenVinoBackend, fix_shapes, read_model, save_ir, stamp
from ..cli import UserError
from ..onnxfile import WEIGHTS_KEY, image_input, load_onnx, metadata, refuse_overwrite
from ..progress import progress
from . import calibration_files, compare_outputs, fold_shape_arithmetic, int8_saturates, load_calibration

log = logging.getLogger(__name__)

PRESET = "performance"  # nncf.QuantizationPreset: symmetric activations


def overflow_fix(flags=None):
    """NNCF's overflow fix for this CPU: ``enable`` (7-bit weights) without VNNI/AMX, else its default."""
    return "enable" if int8_saturates(flags) else "first_layer_only"


def fake_quantize_at_zero(fq):
    """What a FakeQuantize node (constant limits) makes of 0.0, per element of its broadcast limits."""
    import numpy as np
    low, high, out_low, out_high = (fq.input_value(i).get_node().get_data().astype(np.float64) for i in range(1, 5))
    levels = fq.get_attributes()["levels"]
    inside = np.round((0.0 - low) / (high - low) * (levels - 1)) / (levels - 1) * (out_high - out_low) + out_low
    return np.where(0.0 <= np.minimum(low, high), out_low, np.where(0.0 > np.maximum(low, high), out_high, inside))


def fake_quantize_after_pads(model):
    """Move each FakeQuantize that feeds a zero Pad to after the Pad; returns how many were moved.

    NNCF quantises the up-sampling output before the Pad that brings it to the skip tensor's size
    (up1 and up2 at 572: 70 -> 71, 142 -> 143); OpenVINO then cannot keep the Concat after it in
    INT8 and runs the next convolution in float (30% of the INT8 time on AVX2). With the
    FakeQuantize after the Pad the Concat is INT8, as in up3 and up4. Both orders give the same
    numbers, since the pad value 0 is one of the quantisation levels (checked, else the node stays)."""
    import numpy as np
    import openvino.opset13 as ops
    moved = 0
    for pad in [op for op in model.get_ordered_ops() if op.get_type_name() == "Pad"]:
        fq = pad.input_value(0).get_node()
        if (fq.get_type_name() != "FakeQuantize" or len(fq.output(0).get_target_inputs()) != 1
                or pad.get_attributes().get("pad_mode") != "constant"
                or any(fq.input_value(i).get_node().get_type_name() != "Constant" for i in range(1, 5))):
            continue
        if pad.get_input_size() > 3:
            value = pad.input_value(3).get_node()
            if value.get_type_name() != "Constant" or np.any(value.get_data() != 0):
                continue
        out_low, out_high = (fq.input_value(i).get_node().get_data() for i in (3, 4))
        step = np.abs(out_high.astype(np.float64) - out_low) / (fq.get_attributes()["levels"] - 1)
        if np.any(np.abs(fake_quantize_at_zero(fq)) > 1e-4 * step):  # 0 is a level (float rounding aside)
            continue
        consumers = list(pad.output(0).get_target_inputs())
        pad.input(0).replace_source_output(fq.input_value(0))
        moved_fq = ops.fake_quantize(pad.output(0), *(fq.input_value(i) for i in range(1, 5)),
                                     fq.get_attributes()["levels"], name=fq.get_friendly_name())
        for consumer in consumers:
            consumer.replace_source_output(moved_fq.output(0))
        moved += 1
    if moved:
        model.validate_nodes_and_infer_types()
    return moved


def quantize_model(model, calib_dir, output, n_calib=16, size=None, threads=None):
    """Quantise the ONNX ``model`` to the INT8 IR ``output`` (.xml), calibrated on ``calib_dir``; a report dict."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    model_path, output = Path(model), Path(output)
    refuse_overwrite(model_path, output)
    if output.suffix.lower() != ".xml":
        raise UserError(f"{output}: the openvino backend writes an OpenVINO IR: name it .xml (e.g. UNet_int8.xml)")
    fp32 = load_onnx(model_path)
    weights = metadata(fp32).get(WEIGHTS_KEY)
    input_name, channels, size = image_input(fp32, model_path, size)
    files = calibration_files(calib_dir, n_calib, channels, size)
    fix = overflow_fix()
    log.info("%s: calibrating on %d image(s) of %s (NNCF, preset %s, overflow fix %s)", model_path, len(files),
             calib_dir, PRESET, fix)

    with tempfile.TemporaryDirectory(prefix="unet_quantize.") as tmp:
        fp32, folded = fold_shape_arithmetic(fp32, size, model_path)
        source = Path(tmp) / "fp32.onnx"
        onnx.save(fp32, str(source))
        del fp32
        ov_model = fix_shapes(read_model(source), None, size, model_path)
        bar = progress(total=len(files), desc="calibration", unit="image")

        def transform(path):
            bar.update(1)
            return load_calibration(path, channels, size)

        dataset = nncf.Dataset(files, transform)
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's own progress: keep stdout for the summary line
            try:
                int8 = nncf.quantize(ov_model, dataset, preset=nncf.QuantizationPreset(PRESET),
                                     target_device=nncf.TargetDevice.CPU, subset_size=len(files),
                                     fast_bias_correction=True,
                                     advanced_parameters=AdvancedQuantizationParameters(
                                         overflow_fix=OverflowFix(fix)))
            except (RuntimeError, ValueError, nncf.ValidationError, nncf.UnsupportedModelError) as exc:
                raise UserError(f"{model_path}: NNCF cannot quantise it ({type(exc).__name__}: {exc})") from None
        bar.close()
        moved = fake_quantize_after_pads(int8)
        if moved:
            log.info("moved %d FakeQuantize node(s) after the zero padding of the up-sampling path", moved)
        stamp(int8, weights)
        save_ir(int8, output)
        image = load_calibration(files[0], channels, size)
        want = cpu_session(source, threads).run(None, {input_name: image})[0]
    backend = OpenVinoBackend()
    backend.load(output, batchsize=1, threads=threads, precision="int8", size=size)
    try:
        got = backend.infer(image)[0]
        precision = backend.precision
    finally:
        backend.close()
    checked = compare_outputs(want, got, files[0])
    ops = [op.get_type_name() for op in int8.get_ops()]
    report = {
        "output": str(output),
        "preset": PRESET,
        "overflow_fix": fix,
        "calibration_images": len(files),
        "size": size,
        "nodes": len(ops),
        "fake_quantize_nodes": ops.count("FakeQuantize"),
        "folded_shapes": folded,
        "fake_quantize_after_pads": moved,
        "runs_in": precision,
        **checked,
    }
    log.info("wrote %s (+ .bin): %d nodes, %d FakeQuantize; the CPU runs it in %s", output, report["nodes"],
             report["fake_quantize_nodes"], precision)
    return report

"""ONNX model files: loading with clear errors, the batch axis, metadata, and what a graph holds.

Shared by the export, compile and quantise steps of every ONNX-based backend.
"""

from collections import Counter
from pathlib import Path

from .cli import UserError, first_line
from .workdir import SIMPLIFIED

WEIGHTS_KEY = "unet_infer.weights"  # the checkpoint a model was made from (weights.weights_id)
PINNED_HINT = (" (onnxsim's --input-shape pins the batch to 1: simplify the export with scripts/onnxsim.sh, "
               "which keeps it dynamic)")
DRIVER_WORK = "work"  # scripts/run_all.sh's default workdir=
DRIVER_MODELS = (SIMPLIFIED, "UNet_bs8.onnx", "UNet_int8_bs1.xml")  # backends' artefact(): tests/test_rebatch.py


def load_onnx(path, weights=True):
    """An ONNX model (its weights too, unless ``weights=False``); a missing or foreign file is a UserError."""
    import onnx  # imported when used (here and below): reading a declaration must not need it
    from google.protobuf.message import DecodeError
    path = Path(path)
    if not path.is_file():
        raise UserError(model_not_found(path))
    try:
        return onnx.load(str(path), load_external_data=weights)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise UserError(f"{path}: not an ONNX model ({first_line(exc)})") from None


def model_not_found(path):
    """The "model not found" message of ``path``, saying where the pipeline driver writes its models."""
    examples = ", ".join(f"{DRIVER_WORK}/{name}" for name in DRIVER_MODELS)
    return (f"{path}: model not found (scripts/run_all.sh writes its models into the work folder, "
            f"{DRIVER_WORK}/ by default: e.g. {examples})")


def metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model, props):
    """Replace (or add) metadata_props entries."""
    import onnx
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(kept, **props))


def count_ops(model):
    return Counter(node.op_type for node in model.graph.node)


def is_quantized(model):
    quantized = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}
    return any(node.op_type in quantized for node in model.graph.node)


def graph_inputs(model):
    """The graph inputs that are not weights."""
    weights = {init.name for init in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in weights]


def dims(value):
    """The shape of a graph value: ints for fixed axes, None for dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def shapes(model):
    """``{tensor name: dims}`` of every value the graph records a shape for."""
    return {v.name: dims(v) for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}


def batch_is_dynamic(model):
    """True when axis 0 of the first graph input and output is not a fixed number."""
    values = graph_inputs(model)[:1] + list(model.graph.output[:1])
    return all(dims(v) and dims(v)[0] in (None, 0) for v in values)


def fix_batch(model, batchsize, source):
    """Set axis 0 of every graph input and output to ``batchsize``, then infer the inner shapes again."""
    import onnx
    for value in graph_inputs(model) + list(model.graph.output):
        shape = value.type.tensor_type.shape.dim
        if not shape:
            raise UserError(f"{source}: {value.name} has no batch axis to fix")
        if shape[0].HasField("dim_value") and shape[0].dim_value not in (0, batchsize):
            raise UserError(f"{source}: {value.name} already has a fixed batch of {shape[0].dim_value}; compile the "
                            f"dynamic-batch model{PINNED_HINT if shape[0].dim_value == 1 else ''}")
        shape[0].dim_value = batchsize
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def image_input(model, source, size=None):
    """(input name, channels, size) of the model's single N x C x S x S image input; ``size`` must
    agree with a fixed height and width, and is needed where they are dynamic."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise UserError(f"{source}: {len(inputs)} inputs, expected one image input")
    shape = dims(inputs[0])
    if len(shape) != 4:
        raise UserError(f"{source}: input {inputs[0].name} has {len(shape)} axes, expected N x C x S x S")
    if not shape[1]:
        raise UserError(f"{source}: input {inputs[0].name} has a dynamic channel axis")
    if shape[2] and shape[3]:
        if shape[2] != shape[3]:
            raise UserError(f"{source}: input {inputs[0].name} is {shape[2]} x {shape[3]}, expected a square image")
        if size is not None and size != shape[2]:
            raise UserError(f"--size {size}: the model's input is {shape[2]} x {shape[3]}")
        size = shape[2]
    elif size is None:
        raise UserError(f"{source}: input {inputs[0].name} has a dynamic height and width; give --size")
    return inputs[0].name, shape[1], size


def refuse_overwrite(src, dst, source="the source model"):
    """An output that is its own input, a folder, or in no folder is a :class:`UserError`, before any work."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        raise UserError(f"{dst}: is a folder, expected a model file name")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the output must not overwrite {source}")
    if not dst.parent.is_dir():
        raise UserError(f"{dst.parent}: output folder not found")

"""Re-batching a model whose batch axis was pinned to 1, as the guide's onnxsim line pins it:

    python3 -m onnxsim --dynamic-input-shape --input-shape="1,3,572,572" UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx

atc takes the batch from its own ``--input_shape``; the compile step and the runner do the same
where the graph allows it: after onnxsim, UNet's shape arithmetic is on H and W only, so axis 0 of
the inputs and outputs is set to N and the shapes inferred again (ONNX) or the model reshaped
(OpenVINO). A graph that keeps the batch 1 elsewhere (a constant shape starting with 1) is refused,
naming the file and the op. Then :class:`BatchCheck` runs N different random inputs through the
re-batched model and the first and last through the batch-1 model: their outputs must agree within
``TOLERANCE`` of the output range (looser for INT8 and bf16, whose roundings may flip a step where
the batch changes the kernels' blocking). Mixing samples of a batch, or losing one, is far beyond either.
"""

import logging
from pathlib import Path

import numpy as np

from .cli import UserError, first_line
from .onnxfile import PINNED_HINT, dims, graph_inputs, shapes as graph_shapes

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max |re-batched - batch-1| / output range, float32
LOW_PRECISION_TOLERANCE = 2e-2  # INT8 and bf16 models
ONNX_SHAPE_INPUTS = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0}  # op -> its shape input
OV_SHAPE_OPS = ("Reshape", "Broadcast", "Tile")


def tolerance_for(low_precision):
    """The check's tolerance for an INT8 or bf16 model (``low_precision``), else for fp32."""
    return LOW_PRECISION_TOLERANCE if low_precision else TOLERANCE


def is_pinned(model_batch, batchsize):
    """True when a model fixed at batch 1 is asked to run another batch size."""
    return model_batch == 1 and batchsize is not None and batchsize != 1


def onnx_batch(model):
    """Axis 0 of the model's first input: a number, or None when dynamic."""
    inputs = graph_inputs(model)
    shape = dims(inputs[0]) if inputs else []
    return (shape[0] or None) if shape else None


def cannot(source, batchsize, why):
    """The UserError of a model that cannot be re-batched."""
    return UserError(f"{source}: its batch axis is pinned to 1 and it cannot be re-batched to {batchsize}: "
                     f"{why}{PINNED_HINT}")


# ---- ONNX ----

def _constants(model, names):
    """``{name: int array}`` of those ``names`` that are initializers or Constant node outputs."""
    from onnx import numpy_helper
    found = {init.name: init for init in model.graph.initializer if init.name in names}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in names:
            found.update({node.output[0]: a.t for a in node.attribute if a.name == "value"})
    return {name: numpy_helper.to_array(tensor) for name, tensor in found.items()}


def _carried(model):
    """The names of the tensors computed from the graph inputs (those that can hold the batch)."""
    carried = {v.name for v in graph_inputs(model)}
    for node in model.graph.node:  # in topological order, as ONNX requires
        if any(name in carried for name in node.input):
            carried.update(node.output)
    return carried


def onnx_pinning_node(model, batchsize, carried=True):
    """The first Reshape/Expand/Tile whose constant shape starts with 1, whose data input has the
    batch ``batchsize`` and whose inferred output has not (None: none); ``carried=False``: the first
    such op at all, ConstantOfShape included (a suspect where shapes do not infer).
    """
    wanted = {node.input[i] for node in model.graph.node
              if (i := ONNX_SHAPE_INPUTS.get(node.op_type)) is not None and len(node.input) > i}
    constants, shapes, computed = _constants(model, wanted), graph_shapes(model), _carried(model)
    for node in model.graph.node:
        index = ONNX_SHAPE_INPUTS.get(node.op_type)
        shape = constants.get(node.input[index]) if index is not None and len(node.input) > index else None
        if shape is None or shape.size == 0 or int(shape.flat[0]) != 1:
            continue
        if not carried:
            return node
        data, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if (node.op_type != "ConstantOfShape" and node.input[0] in computed and data and data[0] == batchsize
                and (not out or out[0] != batchsize)):
            return node
    return None


def _batch_loser(model, batchsize):
    """The first node with a computed input of batch ``batchsize`` and an output of another batch, or None."""
    shapes, carried = graph_shapes(model), _carried(model)
    for node in model.graph.node:
        ins = [shapes.get(name) for name in node.input if name in carried]
        outs = [shapes.get(name) for name in node.output]
        if any(s and s[0] == batchsize for s in ins) and any(s and s[0] != batchsize for s in outs):
            return node
    return None


def _describe(node):
    return f"its {node.op_type} node {node.name or node.output[0]!r}"


def rebatch_onnx(model, batchsize, source):
    """``model`` (batch pinned to 1) with axis 0 of every input and output set to ``batchsize``, shapes
    inferred again (a new model); a graph that keeps the batch 1 is a UserError.
    """
    import onnx
    from onnx.shape_inference import InferenceError
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in graph_inputs(model) + list(model.graph.output):
        if not value.type.tensor_type.shape.dim:
            raise cannot(source, batchsize, f"{value.name} has no batch axis")
    for value in graph_inputs(model):
        value.type.tensor_type.shape.dim[0].dim_value = batchsize
    for value in model.graph.output:  # inferred below, then checked
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    loose = model
    try:
        loose = onnx.shape_inference.infer_shapes(model, data_prop=True)
        node = onnx_pinning_node(loose, batchsize)
        if node is not None:
            raise cannot(source, batchsize, f"{_describe(node)} has the batch 1 in its constant shape")
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (InferenceError, ValueError, RuntimeError) as exc:
        suspect = onnx_pinning_node(loose, batchsize, carried=False)
        raise cannot(source, batchsize, f"shape inference fails ({first_line(exc)})" + (
            f"; {_describe(suspect)} has the batch 1 in its constant shape" if suspect is not None else "")) from None
    for value in model.graph.output:
        got = dims(value)[0]
        if got != batchsize:
            node = _batch_loser(model, batchsize)
            raise cannot(source, batchsize, f"output {value.name} has batch {got or 'unknown'}"
                         + (f" after {_describe(node)}" if node is not None else ""))
        value.type.tensor_type.shape.dim[0].dim_value = batchsize
    return model


def ort_check(original, source, batchsize, tolerance, session):
    """A :class:`BatchCheck` whose batch-1 reference is ``session(original)``, an onnxruntime session."""
    return BatchCheck(source, batchsize, tolerance, lambda: session(original), lambda ref, arrays: ref.run(
        None, {arg.name: a for arg, a in zip(ref.get_inputs(), arrays)}))


# ---- OpenVINO ----

def _ov_batch(shape):
    """Axis 0 of an ov.PartialShape (None when dynamic or absent)."""
    return shape[0].get_length() if shape.rank.is_static and len(shape) and shape[0].is_static else None


def ov_pinning_op(model, batchsize):
    """The first Reshape/Broadcast/Tile of a reshaped ov.Model whose constant shape starts with 1,
    whose computed data input has the batch ``batchsize`` and whose output has not (None: none).
    """
    carried = set(model.get_parameters())
    for op in model.get_ordered_ops():  # topological order
        if op not in carried and any(op.input_value(i).get_node() in carried for i in range(op.get_input_size())):
            carried.add(op)
        if (op.get_type_name() not in OV_SHAPE_OPS or op.get_input_size() < 2
                or op.input_value(0).get_node() not in carried):
            continue
        shape_source = op.input_value(1).get_node()
        if shape_source.get_type_name() != "Constant":
            continue
        values = np.asarray(shape_source.get_data()).ravel()
        if values.size == 0 or int(values[0]) != 1:
            continue
        if _ov_batch(op.get_input_partial_shape(0)) == batchsize != _ov_batch(op.get_output_partial_shape(0)):
            return op
    return None


def ov_rebatched(model, batchsize, source, tolerance, reshape, compile_model):
    """Reshape the ov.Model ``model`` (batch pinned to 1) to ``batchsize`` with ``reshape(model, batch)``,
    an ONNX source's graph checked first (a graph that keeps the batch 1 is a UserError); its
    :class:`BatchCheck` against a copy of the batch-1 model, ``compile_model(reshape(copy, 1))``.
    """
    original = model.clone()
    if Path(source).suffix.lower() == ".onnx":
        from .onnxfile import load_onnx
        rebatch_onnx(load_onnx(source, weights=False), batchsize, source)
    try:
        reshape(model, batchsize)
    except UserError as exc:
        raise cannot(source, batchsize, str(exc).removeprefix(f"{source}: ")) from None
    op = ov_pinning_op(model, batchsize)
    if op is not None:
        raise cannot(source, batchsize, f"its {op.get_type_name()} {op.get_friendly_name()!r} has the batch 1 in "
                                        f"its constant shape")
    for port in model.outputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or not shape[0].is_static or shape[0].get_length() != batchsize:
            raise cannot(source, batchsize, f"output {port.any_name} has shape {shape}")
    return BatchCheck(source, batchsize, tolerance, lambda: compile_model(reshape(original, 1)), lambda ref, arrays: (
        list(ref.create_infer_request().infer(list(arrays)).to_tuple())))


# ---- the numeric check ----

class BatchCheck:
    """The re-batched model's outputs on N different inputs against the batch-1 model's on the first
    and the last of them: ``run(make(), arrays)``."""

    def __init__(self, source, batchsize, tolerance, make, run):
        self.source, self.batchsize, self.tolerance, self.make, self.run = source, batchsize, tolerance, make, run

    def inputs(self, specs):
        """One array per ``(shape, dtype)``: different uniform [0, 1) samples along axis 0 (0/1 for integers)."""
        rng = np.random.default_rng(0)
        return [rng.random(shape, dtype=np.float32).astype(dtype) if np.dtype(dtype).kind == "f"
                else rng.integers(0, 2, shape).astype(dtype) for shape, dtype in specs]

    def verify(self, inputs, outputs):
        """Raise a UserError unless every output agrees; log the one line that says what was done."""
        worst, reference = 0.0, self.make()
        for i in sorted({0, self.batchsize - 1}):
            want = self.run(reference, [np.ascontiguousarray(a[i:i + 1]) for a in inputs])
            for k, (got, ref) in enumerate(zip(outputs, want)):
                got, ref = np.asarray(got, np.float64)[i:i + 1], np.asarray(ref, np.float64)
                if got.shape != ref.shape:
                    raise cannot(self.source, self.batchsize, f"output {k} of sample {i} has shape {got.shape}, "
                                                              f"the batch-1 model's {ref.shape}")
                scale = max(float(ref.max() - ref.min()) if ref.size else 0.0, 1e-12)
                diff = float(np.abs(got - ref).max()) / scale if ref.size else 0.0
                if not diff <= self.tolerance:
                    raise cannot(self.source, self.batchsize,
                                 f"re-batched, sample {i} of output {k} differs from the batch-1 model by {diff:.2g} "
                                 f"of the output range (tolerance {self.tolerance:g})")
                worst = max(worst, diff)
        log_rebatched(self.source, self.batchsize, worst)


def log_rebatched(source, batchsize, diff=None):
    """The one info line of a re-batched model (``diff``: the check's worst difference; None: not checked)."""
    checked = ("not checked" if diff is None else
               f"checked against the batch-1 model: max diff {diff:.2g} of the output range")
    log.info("%s: the model's batch was pinned to 1 (onnxsim --input-shape); re-batched to %d (%s)",
             source, batchsize, checked)


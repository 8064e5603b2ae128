"""Graph rewrites that let an INT8 UNet run in INT8 end to end in onnxruntime (ONNX graph surgery)."""

import logging

import numpy as np
import onnx

from ..onnxfile import shapes as graph_shapes

log = logging.getLogger(__name__)


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


def upsampling_as_gemm(model):
    """Rewrite UNet's up-sampling ConvTranspose (k x k kernel, stride k; onnxruntime has no INT8
    ConvTranspose) as the same values from a Gemm on channels-last pixels,
    out[co, k*i+a, k*j+b] = sum_ci x[ci, i, j] * W[ci, co, a, b] + bias[co]; returns how many were
    rewritten (those whose input height and width are known). The QLinearConvs around the QGemm run
    channels-last too, so the outer Transposes cancel out."""
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
            shapes = shapes if shapes is not None else graph_shapes(onnx.shape_inference.infer_shapes(model))
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
            model.graph.initializer.append(onnx.numpy_helper.from_array(array, f"{out}_{suffix}"))
            return f"{out}_{suffix}"

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
    """Fold DequantizeLinear -> Pad(constant 0) -> QuantizeLinear (same per-tensor scale and zero point),
    which onnxruntime runs in float, into one Pad of the INT8 tensor by its zero point (the same
    values); returns how many were folded."""
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


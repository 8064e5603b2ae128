"""A bare OpenVINO session on a model, as a user who knows OpenVINO would time it: the reference
the benchmark puts beside each openvino row (its "runner / bare" column).

    python3 -m unet_infer.speed.bare --model UNet_int8_bs1.xml --precision int8 --loop 10 --warmup 2

``core.compile_model(model, "CPU", config)`` with OpenVINO's own defaults, except the precision
hint of an fp32 or bf16 row (the same IR runs either way) and ``--threads``; one infer request,
``request.infer({0: x})`` on random data, each call timed. Prints one JSON line:
``{"times_ms": [...], "precision": what the compiled model runs, "openvino": version}``.
"""

import json
import time

import numpy as np

from .. import cli


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.speed.bare", __doc__)
    add = parser.add_argument
    add("--model", required=True, help="an OpenVINO IR (.xml) or ONNX model")
    add("--precision", choices=["fp32", "bf16", "int8"], required=True, help="the row's precision")
    add("--batchsize", type=cli.int_at_least(1), default=1, help="batch of a model whose batch axis is dynamic")
    add("--size", type=cli.int_at_least(16), default=572, help="height = width of a model whose H, W are dynamic")
    add("--loop", type=cli.int_at_least(1), default=10, help="timed runs")
    add("--warmup", type=cli.int_at_least(0), default=2, help="untimed runs first")
    add("--threads", type=cli.int_at_least(1), help="INFERENCE_NUM_THREADS (without it: OpenVINO's own)")
    args = parser.parse_args(argv)

    from ..backends.openvino_backend import (HINTS, compile_for_cpu, fix_shapes, model_batch, read_model,
                                                runtime_precision)
    import openvino as ov  # after the backend, whose import turns its telemetry off
    model = read_model(args.model)
    fix_shapes(model, model_batch(model) or args.batchsize, args.size, args.model)  # as the runner shapes it
    config = {"INFERENCE_PRECISION_HINT": HINTS[args.precision]} if args.precision in HINTS else {}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    compiled = compile_for_cpu(model, config, args.model)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random(tuple(compiled.input(0).get_shape()), dtype=np.float32)
    for _ in range(args.warmup):
        request.infer({0: x})
    times = []
    for _ in range(args.loop):
        start = time.perf_counter()
        request.infer({0: x})
        times.append((time.perf_counter() - start) * 1000.0)
    print(json.dumps({"times_ms": times, "precision": runtime_precision(compiled), "openvino": ov.__version__}),
          flush=True)


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

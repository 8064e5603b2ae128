"""What to benchmark: ``backend:precision`` configs checked against the backends' own declarations,
and this machine's defaults (a CUDA GPU or the CPU only) for what the user did not give.
"""

import argparse
import warnings
from dataclasses import dataclass

from .. import backends
from ..cli import UserError, int_list, positive_float


@dataclass(frozen=True)
class Defaults:
    """The batch sizes, configs and seconds per row used where the user gave none, as typed."""

    name: str
    batchsizes: str
    configs: str
    max_seconds: str


CPU = Defaults("CPU", "1,2,4", "onnxruntime:fp32,onnxruntime:int8,openvino:fp32,openvino:bf16,openvino:int8,"
                              "torch:fp32,torch:bf16", "60")
GPU = Defaults("GPU", "1,4,8,16,32,64", "torch:fp32,torch:fp16,torch:bf16,onnxruntime:fp32", "120")
NO_LIMIT = "none"


def parse_configs(text):
    """``"onnxruntime:fp32,torch:bf16"`` -> ``[("onnxruntime", "fp32"), ("torch", "bf16")]`` (duplicates
    dropped); a backend or precision the registry does not declare is a :class:`UserError`."""
    configs = []
    for part in [p.strip() for p in str(text).split(",")]:
        name, sep, precision = part.partition(":")
        if not sep or not name or not precision:
            raise UserError(f"{part!r} is not backend:precision (e.g. onnxruntime:fp32)")
        if name not in backends.names():
            raise UserError(f"unknown backend {name!r} in {part!r} ({backends.describe()})")
        if precision not in backends.get_backend(name).precisions:
            raise UserError(f"precision {precision} is not available on {name} in {part!r} ({backends.describe()})")
        if (name, precision) not in configs:
            configs.append((name, precision))
    return configs


def configs_type(text):
    """argparse type of :func:`parse_configs`."""
    try:
        return parse_configs(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


configs_type.__name__ = "backend:precision list"


def max_seconds_type(text):
    """argparse type of ``--max-seconds``: seconds above 0, or ``none`` (no limit)."""
    return NO_LIMIT if text == NO_LIMIT else positive_float(text)


max_seconds_type.__name__ = "seconds"


def check_available(configs):
    """Every backend asked for can run here, else a :class:`UserError` saying what to install."""
    for name in dict.fromkeys(name for name, _ in configs):
        try:
            backends.usable_backend(name)
        except UserError as exc:
            raise UserError(f"--configs: {exc}") from None


def installed(configs):
    """The default configs whose backend can run here (a default never asks to install anything)."""
    usable = {name: backends.get_backend(name).available()[0] for name, _ in configs}
    return [(name, precision) for name, precision in configs if usable[name]]


def cuda_status():
    """``(True, "<GPU name> (torch V, CUDA C, N device(s))")`` where torch sees a CUDA GPU, else
    ``(False, why not)``: torch missing or failing to import, a CPU-only build, or no usable device
    (with the warning torch gave, if any). Imports torch; never raises."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        return False, "torch is not installed" if exc.name == "torch" else f"torch does not import: {exc}"
    except Exception as exc:  # noqa: BLE001 - a broken install is an answer, not a crash
        return False, f"torch does not import: {type(exc).__name__}: {exc}"
    version = getattr(torch, "__version__", "?")
    if not getattr(torch.version, "cuda", None):
        return False, f"torch {version} is a CPU-only build"
    said = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception as exc:  # noqa: BLE001 - a driver that fails to start is an answer too
            count, said = 0, f"{type(exc).__name__}: {exc}"
    if not count:
        said = " ".join((said or (str(caught[0].message) if caught else "")).split())
        return False, f"torch {version} (CUDA {torch.version.cuda}) sees no CUDA device" + (f": {said}" if said else "")
    devices = f"{count} device" + ("" if count == 1 else "s")
    return True, f"{torch.cuda.get_device_name(0)} (torch {version}, CUDA {torch.version.cuda}, {devices})"


def fill_defaults(batchsizes, configs, max_seconds):
    """``(batchsizes, configs, max_seconds, note)``: the ones not given (None) taken from this
    machine's defaults (:data:`GPU` with a CUDA GPU, else :data:`CPU`; of the configs, those whose
    backend can run here), ``note`` saying which (None when all were given); ``max_seconds``
    :data:`NO_LIMIT` becomes None."""
    given = {"batchsizes": batchsizes, "configs": configs, "max_seconds": max_seconds}
    missing = [name for name, value in given.items() if value is None]
    note = None
    if missing:
        chosen = GPU if backends.has_gpu() else CPU
        parse = {"batchsizes": int_list, "configs": lambda text: installed(parse_configs(text)), "max_seconds": float}
        given.update({name: parse[name](getattr(chosen, name)) for name in missing})
        why = "a CUDA GPU is available" if chosen is GPU else "no CUDA GPU"
        note = f"{why}: {chosen.name} defaults " + " ".join(f"--{n.replace('_', '-')} {getattr(chosen, n)}"
                                                            for n in missing)
    seconds = None if given["max_seconds"] == NO_LIMIT else given["max_seconds"]
    return given["batchsizes"], given["configs"], seconds, note

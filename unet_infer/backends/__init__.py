"""The backend registry: one line per backend (its module in this package, holding ``BACKEND``, a
:class:`base.Backend` subclass), each imported only when asked for. Adding a backend: one new
module here, one line in ``REGISTRY``.
"""

import importlib
import logging
from pathlib import Path

from ..cli import UserError
from ..machine import CPUINFO, TEST_CPU_FLAGS_ENV, cpu_flags, forced_cpu_flags  # noqa: F401 (the registry's too)
from ..progress import is_quiet
from .base import ExternalBackend

log = logging.getLogger(__name__)

REGISTRY = {
    "onnxruntime": "onnxruntime_backend",
    "torch": "torch_backend",
    "acl": "acl_backend",
    "openvino": "openvino_backend",
}
DEFAULT_BACKEND = "onnxruntime"
AUTO = "auto"  # the driver's backend=auto: default_backend() decides
FAST_CPU_FLAGS = ("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16")  # what OpenVINO turns into speed


def names():
    return list(REGISTRY)


def get_backend(name):
    """The backend class called ``name`` (its framework not imported)."""
    if name not in REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}")
    return importlib.import_module(f".{REGISTRY[name]}", __name__).BACKEND


def all_backends():
    return [get_backend(name) for name in REGISTRY]


def is_external(name):
    """Whether another program runs the models of backend ``name``."""
    return issubclass(get_backend(name), ExternalBackend)


def in_process(name, flow):
    """The backend class ``name`` for ``flow`` (e.g. "the streaming mode"), not an external one."""
    cls = get_backend(name)
    if issubclass(cls, ExternalBackend):
        takers = ", ".join(other for other in REGISTRY if not is_external(other))
        raise UserError(f"{flow} runs a backend in this process, not {name}, whose models run in {cls.program}; "
                        f"choose one of {takers}")
    return cls


def has_gpu(name=None, installed=None):
    """Whether backend ``name`` (None: any backend) is installed here and runs on a GPU."""
    here = installed_backends() if installed is None else set(installed)
    return any(get_backend(other).has_gpu() for other in ([name] if name else REGISTRY) if other in here)


def usable_backend(name):
    """:func:`get_backend`; a UserError saying what to install when it cannot run here."""
    cls = get_backend(name)
    ok, why = cls.available()
    if not ok:
        raise UserError(why)
    return cls


def backend_for_model(path):
    """The first registered backend that loads a model file of this suffix."""
    suffix = Path(path).suffix.lower()
    for cls in all_backends():
        if suffix in cls.model_suffixes:
            return cls.name
    known = sorted({s for cls in all_backends() for s in cls.model_suffixes})
    raise UserError(f"{path}: cannot tell the backend from the suffix {suffix or '(none)'!r}; "
                    f"expected {', '.join(known)}, or pass --backend")


def profilers():
    """The backends with a per-layer profiler (``can_profile``)."""
    return [cls.name for cls in all_backends() if cls.can_profile]


def precisions():
    """Every precision some backend takes, in a stable order."""
    return list(dict.fromkeys(p for cls in all_backends() for p in cls.precisions))


def describe():
    """``backend: p1 (default), p2; ...`` for help texts and errors."""
    return "; ".join(f"{cls.name}: {', '.join(cls.precisions)}" for cls in all_backends())


def installed_backends():
    """The registered backends whose package is importable here."""
    return {cls.name for cls in all_backends() if cls.package and cls.available()[0]}


def default_backend(precision=None, flags=None, installed=None, gpu=None):
    """The backend ``backend=auto`` runs, by the speed measured on each kind of machine (docs/reference.md):
    onnxruntime with a CUDA/TensorRT provider; openvino where installed and the CPU has any of
    ``FAST_CPU_FLAGS`` (its bf16 and INT8 use AMX/VNNI, onnxruntime's convolutions do not); else onnxruntime,
    as fast and lighter. ``flags``, ``installed`` and ``gpu`` stand in for this machine's in tests."""
    backend, runs, reasons = auto_choice(precision, flags, installed, gpu)
    if not is_quiet():
        log.info("%s", auto_line(backend, runs, reasons))
    warn_if_slow(backend, runs, flags, gpu)
    return backend


def auto_line(backend, precision, reasons):
    return f"backend=auto: {backend} {precision} ({'; '.join(reasons)})"


def slow_path(name, precision, flags=None, gpu=None):
    """The line saying that backend ``name`` has no fast path for ``precision`` here (none of its
    ``native_flags``, no GPU), else None."""
    cls = get_backend(name)
    needs = cls.native_flags.get(precision)
    if not needs or set(needs) & (cpu_flags() if flags is None else set(flags)):
        return None
    if gpu if gpu is not None else cls.available()[0] and cls.has_gpu():
        return None
    return (f"the {name} backend runs {precision} on this CPU without native support (none of {', '.join(needs)}): "
            f"emulated, slower than {cls.precisions[0]}; choose {cls.precisions[0]} for speed")


_WARNED = set()


def warn_if_slow(name, precision, flags=None, gpu=None):
    """Log :func:`slow_path`'s line as a warning, once per process."""
    line = slow_path(name, precision, flags, gpu)
    if line and line not in _WARNED:
        _WARNED.add(line)
        log.warning("%s", line)


def auto_choice(precision=None, flags=None, installed=None, gpu=None):
    """``(backend, precision, reasons)``: :func:`default_backend`'s choice and the facts it read, in words."""
    reasons = []
    if flags is None:
        flags = cpu_flags()
        if forced_cpu_flags() is not None:
            reasons.append(f"CPU flags from {TEST_CPU_FLAGS_ENV}, a test hook")
    here = installed_backends() if installed is None else set(installed)
    if gpu is None:
        gpu = has_gpu(DEFAULT_BACKEND, here)
    fast = [flag for flag in FAST_CPU_FLAGS if flag in flags]
    reasons += [f"CPU has {', '.join(fast)}" if fast else f"CPU has none of {', '.join(FAST_CPU_FLAGS)}",
                "openvino installed" if "openvino" in here else "openvino not installed",
                "a CUDA/TensorRT provider" if gpu else "no CUDA/TensorRT provider"]
    choice = "openvino" if not gpu and "openvino" in here and fast else DEFAULT_BACKEND
    if precision is not None and precision not in get_backend(choice).precisions:
        taker = next((name for name in REGISTRY if name in here and precision in get_backend(name).precisions), None)
        reasons.append(f"{choice} has no {precision}, {taker} has" if taker
                       else f"no installed backend has {precision}: the run stops")
        choice = taker or choice
    return choice, precision or get_backend(choice).precisions[0], reasons

"""The backend registry: one line per backend (its module in this package), each imported only
when asked for. A module holds ``BACKEND``, a :class:`base.Backend` subclass that declares its
precisions, the model file it runs for a batch size and its options (see ``base``).

Adding a backend: one new module here, one line in ``REGISTRY``.
"""

import importlib
from pathlib import Path

from ..cli import UserError

REGISTRY = {
    "onnxruntime": "onnxruntime_backend",
    "torch": "torch_backend",
    "acl": "acl_backend",
    "openvino": "openvino_backend",
}
DEFAULT_BACKEND = "onnxruntime"
AUTO = "auto"  # the driver's backend=auto: default_backend() decides
FAST_CPU_FLAGS = ("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16")  # what OpenVINO turns into speed
CPUINFO = "/proc/cpuinfo"


def names():
    return list(REGISTRY)


def get_backend(name):
    """The backend class called ``name`` (its framework not imported yet)."""
    if name not in REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}")
    return importlib.import_module(f".{REGISTRY[name]}", __name__).BACKEND


def all_backends():
    return [get_backend(name) for name in REGISTRY]


def usable_backend(name):
    """:func:`get_backend`, and a :class:`UserError` saying what to install when it cannot run here."""
    cls = get_backend(name)
    ok, why = cls.available()
    if not ok:
        raise UserError(why)
    return cls


def backend_for_model(path):
    """The backend a model file's suffix calls for (the first registered one that loads it)."""
    suffix = Path(path).suffix.lower()
    for cls in all_backends():
        if suffix in cls.model_suffixes:
            return cls.name
    known = sorted({s for cls in all_backends() for s in cls.model_suffixes})
    raise UserError(f"{path}: cannot tell the backend from the suffix {suffix or '(none)'!r}; "
                    f"expected {', '.join(known)}, or pass --backend")


def precisions():
    """Every precision some backend takes, in a stable order."""
    return list(dict.fromkeys(p for cls in all_backends() for p in cls.precisions))


def describe():
    """``backend: p1 (default), p2; ...``: the precisions of every backend, for help texts and errors."""
    return "; ".join(f"{cls.name}: {', '.join(cls.precisions)}" for cls in all_backends())


def cpu_flags(cpuinfo=CPUINFO):
    """The CPU's feature flags (``/proc/cpuinfo``), an empty set where there is no such file."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


def default_backend(precision=None, flags=None, installed=None, gpu=None):
    """The backend ``backend=auto`` runs: the fastest one measured for this kind of machine.

    1. onnxruntime when it has a CUDA/TensorRT provider here (a GPU beats every CPU path);
    2. openvino when it is installed and the CPU has AMX or AVX-512 VNNI/BF16 (``FAST_CPU_FLAGS``):
       there its bf16 and INT8 run on AMX/VNNI, which onnxruntime does not use for convolutions
       (not measured here: no such machine; docs/openvino.md);
    3. onnxruntime everywhere else (AVX2-only CPUs such as AMD Zen 3, where OpenVINO's fp32 and
       INT8 measured no faster than onnxruntime's, and ARM).
    A ``precision`` the chosen backend does not take moves to the first installed backend of the
    registry that takes it (bf16 without openvino: torch). ``flags``, ``installed`` and ``gpu``
    stand in for this machine's in tests.
    """
    import importlib.util
    if flags is None:
        flags = cpu_flags()
    if installed is None:
        installed = {name for name in REGISTRY
                     if (pkg := get_backend(name).package) and importlib.util.find_spec(pkg) is not None}
    if gpu is None:
        gpu = "onnxruntime" in installed and get_backend("onnxruntime").has_gpu()
    choice = DEFAULT_BACKEND
    if not gpu and "openvino" in installed and flags & set(FAST_CPU_FLAGS):
        choice = "openvino"
    if precision is not None and precision not in get_backend(choice).precisions:
        for name in REGISTRY:
            if name in installed and precision in get_backend(name).precisions:
                return name
    return choice

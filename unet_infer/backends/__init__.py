"""Inference backends behind one interface (``base.Backend``), each imported only when asked for."""

import importlib
from pathlib import Path

from ..errors import UserError

BACKENDS = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend", "onnxruntime"),
    "torch": ("torch_backend", "TorchBackend", "torch"),
    "acl": ("acl_backend", "AclBackend", None),
}
SUFFIX_BACKEND = {".onnx": "onnxruntime", ".pth": "torch", ".pt": "torch", ".om": "acl"}


def get_backend(name):
    """The backend class called ``name``; a missing framework is a UserError that says what to install."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls, package = BACKENDS[name]
    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ImportError as exc:
        if package and exc.name and exc.name.split(".")[0] == package:
            raise UserError(f"the {name} backend needs the {package} package: pip install {package}") from None
        raise
    return getattr(mod, cls)


def backend_for_model(path):
    """The backend a model file's suffix calls for: .onnx, .pth/.pt or .om."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKEND:
        raise UserError(f"{path}: cannot tell the backend from the suffix {suffix or '(none)'!r}; "
                        f"expected .onnx, .pth, .pt or .om, or pass --backend")
    return SUFFIX_BACKEND[suffix]

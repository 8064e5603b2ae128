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
}
DEFAULT_BACKEND = "onnxruntime"


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

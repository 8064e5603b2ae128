"""The backend flags every command that runs a model shares (the runner, stream, predict, cluster):
``--backend``, ``--precision`` and each backend's own options (``Backend.options``)."""

from .. import backends
from ..cli import UserError


def add_backend_flags(parser):
    """--backend, --precision and every backend's own options (each checked against the backend in use)."""
    add = parser.add_argument
    add("--backend", choices=backends.names(), help="without it: from the model's suffix")
    add("--precision", choices=backends.precisions(),
        help=f"compute precision ({backends.describe()}); without it: the model's own, else the backend's "
             f"first")
    for cls in backends.all_backends():
        for option in cls.options:
            if option.type is None:
                add(*option.flags, dest=option.dest, action="store_true", help=option.help)
            else:
                add(*option.flags, dest=option.dest, type=option.type, default=option.default, help=option.help)


def backend_options(args, cls):
    """The chosen backend's options from ``args``; another backend's option set is a UserError."""
    for other in backends.all_backends():
        if other is cls:
            continue
        for option in other.options:
            if option.is_set(getattr(args, option.dest)) and option.dest not in [o.dest for o in cls.options]:
                raise UserError(f"--{option.dest} is an option of the {other.name} backend, not of {cls.name}")
    return {option.dest: getattr(args, option.dest) for option in cls.options}

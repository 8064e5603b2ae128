"""One model opened for a flow that runs it in this process: the runner (``bench``), the stream,
predict and each Ray actor of the cluster. Each of them asks here, and nowhere else, which backend
runs a model, whether it can, and with what: :func:`choose` (no framework imported yet) picks the
backend (``--backend``, else the model's suffix) and refuses one whose models another program runs,
one not installed here, a precision it does not take and another backend's options;
:meth:`Choice.open` loads, checks the input against ``--size`` and warms up (an :class:`Opened`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from . import backends, cli
from .cli import UserError
from .formats import DEFAULT_SIZE
from .loop import warm_up
from .parallel import cpu_count, default_decoders
from .progress import set_quiet
from .summary import with_keys

WARMUP_RUNS = 1  # untimed runs of a flow that warms on zeros, as the runner's default --warmup_count


def add_backend_flags(parser):
    """--backend, --precision and every backend's own options (each checked against the backend in use)."""
    add = parser.add_argument
    add("--backend", choices=backends.names(), help="without it: from the model's suffix")
    add("--precision", choices=backends.precisions(),
        help=f"compute precision ({backends.describe()}); without it: the model's own, else the backend's "
             f"first")
    for cls in backends.all_backends():
        for option in cls.options:
            option.add_to(parser)


def backend_options(args, cls, kind="options"):
    """The chosen backend's runner options (``kind``: or its ``compile_options``) from ``args``;
    another backend's option set is a UserError."""
    own = {option.dest for option in getattr(cls, kind)}
    what = "a compile option" if kind == "compile_options" else "an option"
    for other in backends.all_backends():
        for option in getattr(other, kind):
            if option.dest not in own and getattr(args, option.dest) not in (None, False, option.default):
                raise UserError(f"--{option.dest} is {what} of the {other.name} backend, not of {cls.name}")
    return {dest: getattr(args, dest) for dest in own}


def add_model_flags(parser, machine=True):
    """--size and the backend flags of a flow that feeds images; ``machine``: with --device, --threads
    and --workers, of a flow that decodes beside one model (stream, predict)."""
    add = parser.add_argument
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="model input height = width")
    add_backend_flags(parser)
    if machine:
        add("--device", "-d", type=cli.device_list, default="0", help="device id (CUDA for torch)")
        add("--threads", type=cli.int_at_least(1), default=cpu_count(), help="CPU threads for the model")
        add("--workers", type=cli.int_at_least(1),
            help=f"decoding processes (without it: CPUs - 1, here {default_decoders()})")


def flow_main(build_parser, run, argv=None, one_device=None):
    """A flow's ``main``: parse ``argv``, refuse a --device list where the flow runs on one device
    (``one_device``: why), then ``run(args)``."""
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    if one_device and len(args.device) > 1:
        raise UserError(f"--device: {one_device}")
    run(args)


def model_files(in_process=True):
    """The model files the registry's backends run, for help texts: ``.onnx (onnxruntime), ...``."""
    return ", ".join(f"{'/'.join(cls.model_suffixes)} ({cls.name})" for cls in backends.all_backends()
                     if not in_process or not backends.is_external(cls.name))


def hand_over(args, argv):
    """Where another program runs the model's backend (acl), run it with ``argv()``: its exit
    status; None: the model runs here."""
    cls = backends.get_backend(args.backend or backends.backend_for_model(args.model))
    if args.precision is not None:
        cls.check_precision(args.precision)
    return cls.run_external(argv()) if backends.is_external(cls.name) else None


def prefetch_depth(batchsize, workers, overlap=False):
    """Decoded images to keep ready: a batch (two where the upload overlaps the compute) and two per decoder."""
    return (batchsize or 1) * (2 if overlap else 1) + 2 * workers


@dataclass
class Choice:
    """A model and the backend that runs it in this process, checked (see :func:`choose`)."""

    model: str
    cls: type
    precision: str = None  # as asked (checked), None: the model's own, else the backend's first
    options: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.cls.name

    @property
    def runs_in(self):
        """The precision a load without one runs: the one asked, else the backend's default."""
        return self.cls.check_precision(self.precision)

    def open(self, batchsize=None, device=0, threads=None, size=None, image_size=None, warmup=0, profile=False,
             flow="this flow"):
        """Load, check the input against ``image_size`` and warm up: an :class:`Opened`, a ``with`` closes it."""
        backend = self.cls()
        backend.load(self.model, batchsize=batchsize, device=device, precision=self.precision, threads=threads,
                     size=size, profile=profile, **self.options)
        opened = Opened(self, backend)
        try:
            specs = backend.inputs
            if image_size is not None and (len(specs) != 1 or specs[0].shape[1:] != (3, image_size, image_size)):
                raise UserError(f"{self.model}: the model takes {[s.shape for s in specs]}; {flow} feeds one "
                                f"N x 3 x {image_size} x {image_size} input (see --size)")
            opened.warm_up(count=warmup)
        except BaseException:
            opened.close()
            raise
        return opened


class Opened:
    """A loaded model: ``backend`` (``inputs``, ``batchsize``, ``precision``, ``weights``) and what the
    flows ask of it."""

    def __init__(self, choice, backend):
        self.choice, self.backend = choice, backend

    @property
    def batchsize(self):
        return self.backend.batchsize

    def warm_up(self, arrays=None, count=1):
        """``count`` untimed runs of ``arrays`` (one per input; None: zeros of the inputs' shapes)."""
        warm_up(self.backend, arrays, count)

    def prefetch_depth(self, workers):
        return prefetch_depth(self.backend.batchsize, workers, bool(self.backend.async_upload))

    def summary_keys(self, mode=None):
        """What every flow's summary says of the model, in the order the summary files have always had them."""
        from .machine import describe_machine
        keys = {"backend": self.backend.name, "precision": self.backend.precision,
                "machine": describe_machine(self.backend.device_name())}
        if mode is not None:
            keys["mode"] = mode
        return with_keys(keys, model=str(Path(self.choice.model).resolve()), weights=self.backend.weights)

    def close(self):
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def choose(args, flow, model=None, name=None):
    """The :class:`Choice` of ``model`` (default ``args.model``) on backend ``name`` (default
    ``args.backend``, else from the suffix), for ``flow`` (e.g. "the streaming mode")."""
    model = str(model if model is not None else args.model)
    cls = backends.in_process(name or args.backend or backends.backend_for_model(model), flow)
    backends.usable_backend(cls.name)
    precision = cls.check_precision(args.precision) if args.precision else None
    choice = Choice(model, cls, precision, backend_options(args, cls))
    backends.warn_if_slow(cls.name, choice.runs_in)  # e.g. fp16 on a CPU without it: one warning line
    return choice


def model_exists(path):
    """``path`` when it is a file, else the one UserError saying the model is not found."""
    if not Path(path).is_file():
        raise UserError(f"{path}: model not found")
    return path

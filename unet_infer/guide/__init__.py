"""The guide's four stage scripts as commands of the package.

Each module here holds one top-level script's whole command line (help, options, what it prints):
``preprocess_unet_pth.py`` -> ``python3 -m unet_infer.guide.preprocess``, ``unet_pth2onnx.py`` ->
``.export``, ``json_parse.py`` -> ``.rename``, ``postprocess_unet_pth.py`` -> ``.postprocess``.
The top-level scripts only call these, so they keep working wherever the user moves them (the
guide moves ``unet_pth2onnx.py`` into ``./Pytorch_UNet``), and the driver runs the package's
commands, never a script at a path.
"""


def add_size_and_workers(parser, size_help):
    """``--size`` (default 572) and ``--workers``, as preprocess and postprocess both take them, and ``--quiet``."""
    from .. import cli
    from ..formats import DEFAULT_SIZE
    parser.add_argument("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help=size_help)
    parser.add_argument("--workers", type=cli.int_at_least(1), help="worker processes (without it: one per CPU)")
    cli.add_quiet(parser)


def script(command, prog):
    """A top-level stage script's ``main(argv)``: ``command.main`` under the script's own name."""
    def main(argv=None):
        return command.main(argv, prog=prog)
    return main

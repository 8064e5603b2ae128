"""The backends of this installation and what each declares (the registry, as the shell sees it),
and what the driver's backend=auto takes on this machine, and why.

    python3 -m unet_infer.backends                   a line a backend: precisions (default first), what
                                                     its models are built from, the model for batch size
                                                     8, usable here or not; then the backend=auto: line
    python3 -m unet_infer.backends --precision bf16  the backend=auto: line for precision=bf16
"""

from .. import cli
from . import all_backends, auto_choice, auto_line, precisions


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.backends", __doc__)
    parser.add_argument("--precision", choices=precisions(), default=None,
                        help="the precision asked of backend=auto (default: the chosen backend's first)")
    args = parser.parse_args(argv)
    for cls in all_backends():
        ok, why = cls.available()
        models = ", ".join(f"{p}: {cls.artefact(p, 8) or '(the .pth itself)'}" for p in cls.precisions)
        state = "usable here" if ok else f"not usable here: {why}"
        print(f"{cls.name}: precisions {', '.join(cls.precisions)} (default {cls.precisions[0]}); "
              f"built from {cls.source}; bs 8 -> {models}; {state}")
    print(auto_line(*auto_choice(args.precision)))


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

"""The backends of this installation and what each declares (the registry, as the shell sees it),
and what the driver's backend=auto takes on this machine, and why.

    python3 -m unet_infer.backends                   a line a backend: precisions (default first), what
                                                     its models are built from, the model for batch size
                                                     8, usable here or not; then the backend=auto: line
    python3 -m unet_infer.backends --precision bf16  the backend=auto: line for precision=bf16
    python3 -m unet_infer.backends --json            the same as JSON: {"backends": [...], "auto": {...}}
"""

import json

from .. import cli
from . import all_backends, auto_choice, auto_line, precisions


def rows():
    out = []
    for cls in all_backends():
        ok, why = cls.available()
        out.append({"backend": cls.name, "precisions": list(cls.precisions), "source": cls.source,
                    "quantized": list(cls.quantized), "model_bs8": {p: cls.artefact(p, 8) or "(the .pth itself)"
                                                                    for p in cls.precisions},
                    "options": [o.dest for o in cls.options], "available": ok, "missing": why})
    return out


def auto(precision=None):
    """What ``backend=auto`` (and ``precision``) takes here: ``{"backend", "precision", "why"}``."""
    backend, precision, why = auto_choice(precision)
    return {"backend": backend, "precision": precision, "why": why}


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.backends", __doc__)
    parser.add_argument("--precision", choices=precisions(), default=None,
                        help="the precision asked of backend=auto (default: the chosen backend's first)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)
    table, choice = rows(), auto(args.precision)
    if args.json:
        print(json.dumps({"backends": table, "auto": choice}, indent=2))
        return
    for row in table:
        models = ", ".join(f"{p}: {m}" for p, m in row["model_bs8"].items())
        state = "usable here" if row["available"] else f"not usable here: {row['missing']}"
        print(f"{row['backend']}: precisions {', '.join(row['precisions'])} (default {row['precisions'][0]}); "
              f"built from {row['source']}; bs 8 -> {models}; {state}")
    print(auto_line(choice["backend"], choice["precision"], choice["why"]))


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

"""The backends of this installation and what each declares (the registry, as the shell sees it).

    python3 -m unet_infer.backends            a table: precisions (default first), what the models are
                                              built from, the model for batch size 8, usable here or not
    python3 -m unet_infer.backends --json     the same as JSON
"""

import json

from .. import cli
from . import all_backends


def rows():
    out = []
    for cls in all_backends():
        ok, why = cls.available()
        out.append({"backend": cls.name, "precisions": list(cls.precisions), "source": cls.source,
                    "quantized": list(cls.quantized), "model_bs8": {p: cls.artefact(p, 8) or "(the .pth itself)"
                                                                    for p in cls.precisions},
                    "options": [o.dest for o in cls.options], "available": ok, "missing": why})
    return out


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.backends", __doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return
    for row in table:
        models = ", ".join(f"{p}: {m}" for p, m in row["model_bs8"].items())
        state = "usable here" if row["available"] else f"not usable here: {row['missing']}"
        print(f"{row['backend']}: precisions {', '.join(row['precisions'])} (default {row['precisions'][0]}); "
              f"built from {row['source']}; bs 8 -> {models}; {state}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

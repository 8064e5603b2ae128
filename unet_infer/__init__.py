"""UNet segmentation inference for the Carvana car-masking data set.

The package holds the logic behind the stage scripts at the repository root (preprocess,
export, json_parse, postprocess), the ais_bench-compatible runner ``python3 -m unet_infer.bench``
and its backends, the driver's questions (``stages``), the sample-data generator and the trainer
of the bundled checkpoint. ``README.md`` maps every module.
"""

import sys

__version__ = "0.2.0"


def _interrupted(kind, value, tb, previous=sys.excepthook):
    """Ctrl-C before a command's own handler is in place (while Python imports): one line, not a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
    else:
        previous(kind, value, tb)


if not hasattr(sys, "ps1"):  # a command, not an interactive session
    sys.excepthook = _interrupted

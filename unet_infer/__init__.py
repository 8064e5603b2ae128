"""UNet segmentation inference for the Carvana car-masking data set.

The package holds the logic behind the stage scripts at the repository root (preprocess,
export, json_parse, postprocess), the ais_bench-compatible runner ``python3 -m unet_infer.bench``
and its backends, the driver's questions (``stages``), the sample-data generator and the trainer
of the bundled checkpoint. ``README.md`` maps every module.
"""

import os
import sys

__version__ = "0.2.0"

# onnxruntime 1.32 keeps a device id in ~/.cache/Microsoft/DeveloperTools/.onnxruntime and sends usage
# events unless ORT_DISABLE_TELEMETRY is set when it is imported: off in the package's processes and
# those they start (Ray's workers too), unless the user set it. See unet_infer/telemetry.py.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Set by a driver that says "error: interrupted" itself (scripts/run_all.sh, in its trap): then a
# command it runs ends on Ctrl-C with exit status 130 and no line of its own, so the line is printed once.
SILENT_INTERRUPT = "UNET_INFER_SILENT_INTERRUPT"


def say_interrupted():
    """Ctrl-C's one line, ``error: interrupted`` on stderr, unless the driver says it (``SILENT_INTERRUPT``)."""
    if os.environ.get(SILENT_INTERRUPT) != "1":
        print("error: interrupted", file=sys.stderr)


def _interrupted(kind, value, tb, previous=sys.excepthook):
    """Ctrl-C before a command's own handler is in place (while Python imports): one line, not a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        say_interrupted()
    else:
        previous(kind, value, tb)


if not hasattr(sys, "ps1"):  # a command, not an interactive session
    sys.excepthook = _interrupted

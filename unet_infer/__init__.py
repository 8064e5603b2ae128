"""UNet segmentation inference for the Carvana car-masking data set; ``README.md`` maps every module."""

import os
import sys

__version__ = "0.2.0"

# No usage telemetry: onnxruntime 1.32 keeps a device id in ~/.cache/Microsoft/DeveloperTools and sends
# events unless ORT_DISABLE_TELEMETRY is set at its import (here, and so in the processes the package starts).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def openvino_telemetry_off():
    """Make openvino_telemetry (runs counted in ~/intel/stats, a client id, events; no setting but CI=true
    stops it) decline before openvino or nncf is imported: its consent check finds no consent folder."""
    try:
        from openvino_telemetry.utils.opt_in_checker import OptInChecker
    except ImportError:
        return
    OptInChecker.consent_file_base_dir = staticmethod(lambda: None)

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

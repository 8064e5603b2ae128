"""UNet segmentation inference for the Carvana car-masking data set; ``README.md`` maps every module."""

import os
import sys

__version__ = "0.2.0"

# The frameworks' usage telemetry is off in the package's processes and out of the user's home.
# onnxruntime 1.32 keeps a device id in ~/.cache/Microsoft/DeveloperTools/.onnxruntime and sends usage
# events unless ORT_DISABLE_TELEMETRY is set when it is imported: off here and in the processes the
# package starts (Ray's workers too), unless the user set it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def openvino_telemetry_off():
    """Make openvino_telemetry decline in this process, before openvino or nncf is imported (it counts
    every run in ~/intel/stats, writes a client id and sends events; no setting but CI=true stops it):
    its consent check declines when it finds no folder for the consent file."""
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

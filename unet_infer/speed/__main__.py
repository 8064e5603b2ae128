"""``python3 -m unet_infer.speed``: see the package's docstring (``--help``)."""

import sys

from ..cli import run_cli
from . import main

sys.exit(run_cli(main))

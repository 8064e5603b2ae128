import sys

from ..cli import run_cli
from . import main

sys.exit(run_cli(main))

import sys

from ..cli import run_cli
from .runner import main

sys.exit(run_cli(main))

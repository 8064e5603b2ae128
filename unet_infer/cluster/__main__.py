from ..cli import run_cli
from . import main

raise SystemExit(run_cli(main))

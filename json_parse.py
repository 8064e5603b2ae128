"""Stage 5: rename the runner's outputs after their images, as the ais_bench summary maps them.

The guide's command:

    python3 json_parse.py --output=result/bs8/

Reads result/bs8_summary.json (the summary beside the folder; the trailing slash is optional)
and renames, inside result/bs8, each entry's outfiles[0] to the stem of its infiles[0]
(<stem>_0.bin -> <stem>.bin). Base names only: nothing outside the folder is touched.
The whole plan is checked first; an existing file is never overwritten; running it again
changes nothing, and a run killed half-way finishes when run again.
"""

import argparse
import sys

from unet_infer.errors import run_cli
from unet_infer.progress import set_quiet
from unet_infer.rename import rename_outputs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True,
                        help="the runner's output folder, e.g. result/bs8 (its summary lies beside it)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_quiet(args.quiet)
    renamed, done = rename_outputs(args.output)
    print(f"renamed {renamed} files ({done} already done) in {args.output}")


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Stage 5: give each output its image's name, from the runner's summary.

The guide's command:

    python3 json_parse.py --output=result/bs8/

reads result/bs8_summary.json and renames, inside result/bs8, each entry's outfiles[0] to the stem of its infiles[0]
(<stem>_0.bin -> <stem>.bin). Base names only: nothing outside the folder is touched.
The whole plan is checked first; an existing file is never overwritten; running it again
changes nothing, and a run killed half-way finishes when run again.
"""

from unet_infer import cli
from unet_infer.progress import set_quiet
from unet_infer.rename import rename_outputs


def build_parser():
    parser = cli.parser("json_parse.py", __doc__)
    parser.add_argument("--output", required=True,
                        help="the runner's output folder, e.g. result/bs8 (its summary lies beside it)")
    cli.add_quiet(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    renamed, done = rename_outputs(args.output)
    print(f"renamed {renamed} file{'s' if renamed != 1 else ''} ({done} already done) in {args.output}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

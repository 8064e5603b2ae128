"""Stage 5: give each output its image's name, from the runner's summary.

The guide's command:

    python3 json_parse.py --output=result/bs8/

(the same as ``python3 -m unet_infer.guide.rename --output=result/bs8/``) reads
result/bs8_summary.json and renames, inside result/bs8, each entry's outfiles[0] to the stem of
its infiles[0] (<stem>_0.bin -> <stem>.bin). Base names only: nothing outside the folder is
touched. The whole plan is checked first; an existing file is never overwritten; running it
again changes nothing, and a run killed half-way finishes when run again.
"""

from .. import cli
from ..progress import set_quiet

PROG = "python3 -m unet_infer.guide.rename"


def build_parser(prog=PROG):
    parser = cli.parser(prog, __doc__)
    parser.add_argument("--output", required=True,
                        help="the runner's output folder, e.g. result/bs8 (its summary lies beside it)")
    cli.add_quiet(parser)
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    set_quiet(args.quiet)
    from ..rename import rename_outputs
    renamed, done = rename_outputs(args.output)
    print(f"renamed {renamed} file{'s' if renamed != 1 else ''} ({done} already done) in {args.output}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

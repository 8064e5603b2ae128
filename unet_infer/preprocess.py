"""Stage 1: convert the Carvana images to the model's input files.

The guide's command:

    python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin

(the same as ``python3 -m unet_infer.preprocess ...``). Every .jpg/.jpeg/.png in --src_path
(not recursive; other files are skipped with a warning) becomes --save_bin_path/<stem>.bin: RGB,
resized to size x size (PIL's default bicubic, aspect ratio not kept), float32 CHW in [0, 1],
3*572*572*4 = 3,926,208 bytes at 572. Files already in --save_bin_path are kept. An unreadable
image is named in a warning, the others are still written, and the run ends with an error
listing the unreadable ones; with --skip_unreadable it ends with a line listing them instead
(status 0), and the next stages run on the others.
"""

import logging
from pathlib import Path

from . import cli
from .cli import UserError, os_error
from .data import find_images, try_load_image
from .formats import DEFAULT_SIZE, natural_key, write_bin
from .parallel import parallel_map
from .progress import set_quiet

log = logging.getLogger(__name__)
PROG = "python3 -m unet_infer.preprocess"


def _convert_one(task):
    """Worker: (source, target, size) -> (source, None) or (source, why it could not be read)."""
    src, dst, size = task
    array, why = try_load_image(src, size)
    if why:
        return src, why
    try:
        write_bin(dst, array)
    except OSError as exc:
        raise os_error(dst, exc) from None
    return src, None


def preprocess_folder(src, dst, size=DEFAULT_SIZE, workers=None):
    """Convert every image in ``src`` to ``dst/<stem>.bin`` over a process pool; return
    ``(n_written, bad_files)``: those that could not be decoded (each also named in a warning)."""
    src, dst = Path(src), Path(dst)
    stems = find_images(src)
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the output folder must not be the image folder (the .bin files would mix "
                        f"with the images)")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(dst, exc, "create the output folder") from None
    tasks = [(str(path), str(dst / f"{stem}.bin"), size) for stem, path in stems.items()]
    bad = []
    for source, why in parallel_map(_convert_one, tasks, workers, desc="preprocess", unit="img"):
        if why is not None:
            log.warning("%s: cannot read the image (%s)", source, why)
            bad.append(source)
    return len(tasks) - len(bad), sorted(bad, key=natural_key)


def add_size_and_workers(parser, size_help):
    """``--size``, ``--workers`` and ``--quiet``, as preprocess and postprocess take them."""
    parser.add_argument("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help=size_help)
    parser.add_argument("--workers", type=cli.int_at_least(1), help="worker processes (without it: one per CPU)")
    cli.add_quiet(parser)


def main(argv=None, prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add(*cli.flag("src_path"), dest="src_path", required=True, help="folder of images (.jpg/.jpeg/.png)")
    add(*cli.flag("save_bin_path"), dest="save_bin_path", required=True,
        help="folder for the <stem>.bin files (created if missing; nothing is deleted)")
    add(*cli.flag("skip_unreadable"), dest="skip_unreadable", action="store_true",
        help="an image that cannot be read is left out and listed at the end, and the run succeeds (without "
             "it: the others are converted, then an error lists it)")
    add_size_and_workers(parser, "model input height and width")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    written, bad = preprocess_folder(args.src_path, args.save_bin_path, size=args.size, workers=args.workers)
    print(f"wrote {written} file{'s' if written != 1 else ''} of {args.size}x{args.size} input to "
          f"{args.save_bin_path}")
    if bad and args.skip_unreadable:
        print(f"skipped {len(bad)} unreadable image(s), not converted (left out of the next stages): "
              f"{', '.join(bad)}")
    elif bad:
        raise UserError(f"{len(bad)} unreadable image(s), not converted: {', '.join(bad)} (--skip_unreadable "
                        f"leaves them out and goes on; scripts/run_all.sh: unreadable=skip)")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

"""Synthetic Carvana: studio photos of cars and their masks, in the Kaggle data set's exact layout.

    python3 -m unet_infer.sample --output ./carvana --cars 4 --seed 0

Makes ``DIR/train/<carid>_<NN>.jpg`` (RGB JPEG, 1918 x 1280 by default) and
``DIR/train_masks/<carid>_<NN>_mask.gif`` (palette GIF; pixel values 0 = background, 1 = car),
NN = 01..16, ``<carid>`` = 12 lowercase hex digits, so that every stage can run and be scored
without the real data.

Each car is a small 3-D model of random shape (sedan, hatchback or SUV) and paint: a body with
wheel arches, a cabin with windows, wheels with rims, lights and door seams. It turns on a studio
turntable in 22.5 degree steps (view 01 faces the camera, 05 shows its side, 09 its back) and is
drawn in perspective, with 2x supersampling, in front of a light grey wall and floor with smooth
gradients, over a soft floor shadow that is not part of the mask, with sensor noise and JPEG
compression (quality 85-95). The mask is the car's silhouette (body, cabin, windows, wheels) as
drawn, before noise and compression. Paints include whites and greys close to the studio's own
colours, windows are dark and so is the shadow: a colour threshold cannot solve it.

Everything is a pure function of the arguments: the same seed gives byte-identical files, whatever
the number of workers. Existing files of the same names are overwritten; nothing is deleted.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .. import cli
from ..formats import atomic_write_bytes
from ..parallel import parallel_map
from ..progress import set_quiet
from .car import make_car
from .render import MAX_VIEWS, render_view

MIN_SIZE = 64


def encode_jpeg(rgb, quality):
    """JPEG bytes of an RGB uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def encode_mask_gif(mask):
    """Carvana-style mask GIF bytes: palette image whose indices are the mask values (0/1)."""
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette([0, 0, 0, 255, 255, 255])  # index 1, the car, shows white
    buf = io.BytesIO()
    img.save(buf, "GIF", optimize=False)      # optimize=True may renumber the palette
    return buf.getvalue()


def view_paths(out_dir, car_id, view):
    """(image path, mask path) of one view, in Carvana's layout."""
    stem = f"{car_id}_{view:02d}"
    out_dir = Path(out_dir)
    return out_dir / "train" / f"{stem}.jpg", out_dir / "train_masks" / f"{stem}_mask.gif"


def _write_view(task):
    """Worker: render one view and write its photo and mask."""
    out_dir, seed, index, view, width, height = task
    car = make_car(seed, index)
    rgb, mask = render_view(car, view, width, height)
    image_path, mask_path = view_paths(out_dir, car.car_id, view)
    for path, data in ((image_path, encode_jpeg(rgb, car.quality)), (mask_path, encode_mask_gif(mask))):
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise cli.os_error(path, exc) from None


def generate(out_dir, cars, seed, views=MAX_VIEWS, width=1918, height=1280, workers=None):
    """Write ``cars`` x ``views`` (1..MAX_VIEWS) photos and masks under ``out_dir``; return their
    (image, mask) paths, car by car, view by view. ``workers`` processes (None: one per CPU)."""
    out_dir = Path(out_dir)
    try:
        for sub in ("train", "train_masks"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(out_dir, exc, "create the output folders") from None
    ids = [make_car(seed, index).car_id for index in range(cars)]
    tasks = [(str(out_dir), seed, index, view, width, height)
             for index in range(cars) for view in range(1, views + 1)]
    for _ in parallel_map(_write_view, tasks, workers, desc="sample", unit="img"):
        pass
    return [view_paths(out_dir, car_id, view) for car_id in ids for view in range(1, views + 1)]


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.sample", __doc__)
    add = parser.add_argument
    add("--output", "--out", dest="output", required=True, metavar="DIR",
        help="output folder (gets train/ and train_masks/)")
    add("--cars", type=cli.int_at_least(1), default=4, help="number of cars")
    add("--seed", type=cli.int_at_least(0), default=0, help="data set seed")
    add("--views", type=cli.number(int, lambda views: 1 <= views <= MAX_VIEWS, f"is not in 1..{MAX_VIEWS}"),
        default=MAX_VIEWS, help=f"views per car, at most {MAX_VIEWS}")
    add("--width", type=cli.int_at_least(MIN_SIZE), default=1918, help="image width, pixels")
    add("--height", type=cli.int_at_least(MIN_SIZE), default=1280, help="image height, pixels")
    add("--workers", type=cli.int_at_least(1), default=None, help="worker processes (default: one per CPU)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    pairs = generate(args.output, args.cars, args.seed, args.views, args.width, args.height, args.workers)
    print(f"wrote {len(pairs)} images to {Path(args.output) / 'train'} "
          f"and {len(pairs)} masks to {Path(args.output) / 'train_masks'}")


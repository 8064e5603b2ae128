"""Train the UNet on Carvana-format folders: real Carvana photos, generated cars, or both.

    python3 -m unet_infer.train --data carvana512/train-cars --holdout-cars 12 --extra work/train/gen-train \\
        --width 12 --epochs 8 --steps-per-epoch 300 --batch 4 --crop 384 --checkpoint-dir work/train/ckpt \\
        --resume --out weights/unet_carvana.pth

(scripts/train_bundled.sh runs the shipped checkpoints' recipes, see its --help.)

Images are resized to the pipeline's input size (572, as the preprocess stage does) and held in
memory as uint8. Every step draws random crops of them with a random zoom (--scale), horizontal
flips, colour jitter and a random blur or sharpening (--blur; photos downscaled from 1918x1280 look
sharper than the 512x512 copies upscaled to 572). Loss: binary cross-entropy plus Dice; AdamW with a
one-cycle learning rate; bf16 autocast on CUDA and on CPUs with native bf16 (AMX, AVX-512 BF16); CUDA
is used when present. The result is a plain fp32 state_dict in the ModelZoo layout, which
``unet_pth2onnx.py`` loads unchanged.

The held-out cars (--holdout-cars, chosen from --seed) and the --measure folders are scored as the
pipeline scores (logit > 0, IoU per image, mean over images).
"""

import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from .. import cli
from ..cli import UserError
from ..formats import DEFAULT_SIZE, atomic_write_text
from ..machine import describe_machine, today
from ..model import count_parameters, load_unet
from ..progress import set_quiet
from ..weights import file_sha256
from .data import ORIGINAL_SIZE, Augment
from .loop import CHECKPOINT_NAME, DEVICE, measure, train

PROG = "python3 -m unet_infer.train"
FRACTION = cli.number(float, lambda value: 0.0 <= value <= 1.0, "is not a fraction from 0 to 1")


def _record_of(path, out):
    """The record at ``path`` when it describes this very ``out`` file, else {}."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return info if info.get("checkpoint_sha256") == file_sha256(out) else {}


def main(argv=None):
    parser = cli.parser(PROG, __doc__)
    add = parser.add_argument
    add("--data", required=True, metavar="DIR", help="Carvana-format folder with train/ and train_masks/")
    add("--out", required=True, metavar="PTH", help="state_dict file to write (.pth)")
    add("--width", type=cli.int_at_least(1), default=16, help="base width of the UNet")
    add("--epochs", type=cli.int_at_least(1), default=12, help="epochs")
    add(*cli.flag("steps_per_epoch"), dest="steps_per_epoch", type=cli.int_at_least(1), default=None,
        help="optimiser steps per epoch (default: enough crops to cover the training images twice)")
    add("--batch", type=cli.int_at_least(1), default=8, help="crops per step")
    add("--crop", type=cli.int_at_least(1), default=256, help="training crop size")
    add("--size", type=cli.int_at_least(1), default=DEFAULT_SIZE,
        help="images are first resized to SIZE x SIZE, as in preprocessing")
    add("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), default=(1.0, 1.0),
        help="random zoom of each crop (log-uniform; 0.5 = half size: a crop sees twice the width; "
             "default: 1 1, no zoom)")
    add("--blur", type=FRACTION, default=0.0, help="probability that a crop is blurred or sharpened (sharpness jitter)")
    add("--colour", type=float, default=1.0,
        help="strength of the colour jitter (0: none; 1: brightness +-20%%, saturation +-30%%)")
    add("--lr", type=cli.positive_float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    add("--seed", type=int, default=0, help="random seed: initial weights, held-out cars, crops and augmentation")
    add(*cli.flag("holdout_cars"), dest="holdout_cars", type=cli.int_at_least(0), default=0,
        help="whole cars of --data kept out of training and scored after every epoch")
    add("--extra", action="append", default=None, metavar="DIR",
        help="another Carvana-format folder to train on, e.g. generated cars (repeatable)")
    add(*cli.flag("extra_fraction"), dest="extra_fraction", type=FRACTION, default=None,
        help="share of the crops drawn from the --extra folders (default: in proportion to their image count)")
    add(*cli.flag("checkpoint_dir"), dest="checkpoint_dir", default=None, metavar="DIR",
        help=f"save DIR/{CHECKPOINT_NAME} after every epoch (model, optimiser, schedule, random states)")
    add("--resume", action="store_true",
        help="continue from --checkpoint-dir when it holds a checkpoint (a finished run is not trained again)")
    add("--measure", action="append", default=None, metavar="DIR",
        help="Carvana-format folder to score the final model on (repeatable); never used for training")
    add(*cli.flag("measure_upscaled"), dest="measure_upscaled", action="append", default=None, metavar="DIR",
        help="the same, each image first upscaled to 1918x1280 (bicubic; masks nearest): a proxy for the "
             "original-size photos")
    add(*cli.flag("info_json"), dest="info_json", default=None, metavar="FILE",
        help="write what was trained and measured to FILE")
    add("--command", default=None, help="the command to record in --info-json (default: this one)")
    add("--workers", type=cli.int_at_least(1), default=None, help="processes for loading (default: all cores)")
    add("--threads", type=cli.int_at_least(1), default=None, help="PyTorch threads (default: PyTorch's)")
    add("--init", default=None, metavar="PTH",
        help="start from this checkpoint (fine-tuning; its width wins over --width)")
    add("--ema", type=cli.number(float, lambda value: 0.0 < value < 1.0, "is not a decay between 0 and 1"),
        metavar="DECAY",
        help="keep an exponential moving average of the weights (e.g. 0.999); it is validated and saved")
    add(*cli.flag("bn_images"), dest="bn_images", type=cli.int_at_least(0), default=0, metavar="N",
        help="at the end, recompute the BatchNorm statistics on N clean whole training images (0: no)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    if args.info_json and not Path(args.info_json).parent.is_dir():  # before the training, not after
        raise UserError(f"{Path(args.info_json).parent}: folder for --info-json not found")
    result = train(args.data, args.out, width=args.width, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                   batch=args.batch, crop=args.crop, size=args.size, lr=args.lr, seed=args.seed,
                   workers=args.workers, threads=args.threads, init=args.init, holdout_cars=args.holdout_cars,
                   extra=args.extra or [], extra_fraction=args.extra_fraction,
                   augment=Augment(args.scale[0], args.scale[1], args.blur, args.colour),
                   checkpoint_dir=args.checkpoint_dir, resume=args.resume, ema=args.ema, bn_images=args.bn_images)
    history = result["history"]
    last = history[-1] if history else {}
    state = "already complete" if result["complete_before"] else "trained"
    print(f"{args.out}: {state}, {len(history)} epochs, final loss {last.get('loss', float('nan')):.4f}"
          + (f", held-out IoU {last['holdout_iou']:.4f}" if "holdout_iou" in last else ""))

    measures = [("plain", d) for d in args.measure or []] + [("upscaled", d) for d in args.measure_upscaled or []]
    requests = [[kind, Path(folder).name] for kind, folder in measures]  # folder names: no private paths
    before = _record_of(args.info_json, args.out) if args.info_json and result["complete_before"] else {}
    if before.get("measure_requests") == requests:
        print(f"{args.info_json}: up to date")
        return 0
    measured = []
    start = time.monotonic()
    for kind, folder in measures:
        m = measure(args.out, folder, args.size, ORIGINAL_SIZE if kind == "upscaled" else None, args.workers)
        measured.append(m)
        print(f"{m['folder']}{' (upscaled to 1918x1280)' if kind == 'upscaled' else ''}: mean IoU "
              f"{m['mean_iou']:.4f} ({m['images']} images)")
    if not args.info_json:
        return 0
    model, layout = load_unet(args.out)
    info = {
        "checkpoint": Path(args.out).name,
        "checkpoint_bytes": Path(args.out).stat().st_size,
        "checkpoint_sha256": file_sha256(args.out),
        "layout": "UNet(3, 1, bilinear=False, width=W, bias=True) (ModelZoo layout)",
        "width": layout.width,
        "parameters": count_parameters(model),
        "command": args.command or f"{PROG} " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "data": result["data"],
        "recipe": result["config"],
        "epochs": len(history),
        "train_wall_seconds": round(result["train_seconds"], 1),
        "train_cpu_seconds": round(result["train_cpu_seconds"], 1),
        "measure_wall_seconds": round(time.monotonic() - start, 1),
        "date": today(),
        "machine": f"{describe_machine(DEVICE)}; torch {torch.__version__}, {torch.get_num_threads()} threads"
                   f", {'bf16 autocast' if result['config']['amp'] else 'fp32'}; {platform.system()}",
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
        "final_holdout_iou": last.get("holdout_iou"),
        **({"bn_recomputed": result["bn_recomputed"]} if "bn_recomputed" in result else {}),
        "measured": measured,
        "measure_requests": requests,
    }
    earlier = Path(args.init).with_suffix(".json") if args.init else None
    if earlier and earlier.is_file():  # the record of the phase this one started from
        try:
            info["init_record"] = json.loads(earlier.read_text())
        except ValueError:
            raise UserError(f"{earlier}: the record of --init is not JSON") from None
    # nothing trained now: how and where it was trained stays the record's
    info.update({key: before[key] for key in ("command", "date", "machine") if key in before})
    atomic_write_text(Path(args.info_json), json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.info_json}")
    return 0

"""scripts/run_all.sh's options, each checked here once, and its plan, as shell assignments:
``python3 -m unet_infer.driver options bs=8 ...`` (before the run's lock), then ``plan bs=8 ...``."""

import os
import shlex
import sys

from . import cli
from .cli import UserError
from .progress import set_quiet
from .workdir import Workdir

USAGE = """usage: scripts/run_all.sh bs=8 [key=value ...]

Runs every stage of the UNet inference guide in order, all artefacts under one work folder. A
stage is skipped when what it was made from is unchanged, so a stopped run resumes with the same
command; one run at a time per work folder; another backend= or precision= there keeps the others'
results (docs/reference.md: re-runs).

options (key=value):
  bs=8            batch size, or a comma list (bs=1,8,32) sharing every stage that does not
                  depend on the batch size
  data=DIR        Carvana-format folder with train/ and train_masks/ (<stem>_mask.gif or .png)
                  (default: a generated sample of 2 cars x 16 views in WORK/sample)
  weights=PTH     UNet checkpoint (default: the bundled weights/unet_carvana.pth)
  workdir=DIR     work folder (default: ./work)
  backend=NAME    auto (default: the fastest here, docs/reference.md says how it picks; the run's
                  closing line names it), onnxruntime, openvino, torch (runs the checkpoint) or acl
                  (Ascend: atc + ais_bench); `python3 -m unet_infer.backends` lists them
  precision=P     what the backend computes in (default: the backend's first): onnxruntime
                  fp32|int8, openvino fp32|bf16|int8, torch fp32|fp16|bf16, acl fp16
  loop=5          timed runs of the pure-inference measurement per batch size (the guide's
                  `--loop`); its throughput is the figure printed; loop=0 skips it
  retime=0|1      1: run the pure-inference measurement again even where it is complete (a
                  fresh figure for the same model, e.g. on a quieter machine); the rest is kept
  labels=yes|none none: run without scoring (no masks needed)
  unreadable=stop|skip  an image that cannot be read: stop (default, as the guide: preprocess
                  fails naming it) or skip (left out and listed; the file flow only: stream=1 and
                  cluster=ray leave it out of the scores and end with an error naming it)
  device=N        device id for the torch/acl backends (default: 0)
  threads=N       CPU threads for inference (default: all cores)
  size=572        network input size (at least 16)
  stream=0|1      1: decode, infer and score in one pass, writing no image or output .bin files
  cluster=ray     the stream flow on Ray Data: decoding tasks and a pool of inference actors that
                  also score (same results and files as stream=1); a local Ray on this machine's
                  cores, or with address= a running cluster (docs/cluster.md)
  address=A       cluster=ray: join a running Ray cluster, auto or HOST:PORT; the data, weights
                  and work folder must be on storage every node reads at the same path
  actors=N        cluster=ray: inference actors (default: one per GPU with gpus_per_actor=, else 1)
  gpus_per_actor=G  cluster=ray: GPUs each actor reserves (default 0: actors on CPU cores, with
                  threads= each, default the CPUs / actors)
  chip=NAME       Ascend chip for atc (default: read from npu-smi info)
  cars=2          cars in the generated sample (16 views each)
  seed=20261127   seed of the generated sample
  quiet=0|1       1: no progress bars

examples:
  scripts/run_all.sh bs=8
  scripts/run_all.sh bs=1,8,32 precision=int8
  scripts/run_all.sh bs=1 backend=openvino precision=int8
  scripts/run_all.sh bs=8 data=./carvana weights=./UNet.pth
  scripts/run_all.sh bs=8 cluster=ray actors=2
  scripts/run_all.sh bs=8 backend=acl data=./carvana weights=./UNet.pth chip=310P3
"""

WHOLE, POSITIVE = "[0-9]+", "[1-9][0-9]*"
# key: (default, the form of its value, what that form is in words)
OPTIONS = {
    "bs": ("8", f"{POSITIVE}(,{POSITIVE})*", "a batch size or a comma list of them"),
    "data": ("", ".+", "a folder"), "weights": ("", ".+", "a .pth file"), "workdir": ("./work", ".+", "a folder"),
    "backend": ("auto", ".*", ""), "precision": ("", ".*", ""), "chip": ("", ".*", ""),
    "loop": ("5", WHOLE, "a whole number (0: no timing run)"), "retime": ("0", "[01]", "0 or 1"),
    "labels": ("yes", "yes|none", "yes or none"), "unreadable": ("stop", "stop|skip", "stop or skip"),
    "device": ("0", WHOLE, "a whole number"), "threads": ("", f"|{POSITIVE}", "a positive whole number"),
    "size": ("572", POSITIVE, "a positive whole number"), "stream": ("0", "[01]", "0 or 1"),
    "cluster": ("", "|ray", "ray (or left out)"), "address": ("", ".+", "auto or HOST:PORT"),
    "actors": ("", f"|{POSITIVE}", "a positive whole number"),
    "gpus_per_actor": ("0", "[0-9]+([.][0-9]+)?", "a number of GPUs"),
    "cars": ("2", POSITIVE, "a positive whole number"), "seed": ("20261127", WHOLE, "a whole number"),
    "quiet": ("0", "[01]", "0 or 1"),
}
STAGE_VALUES = ("backend", "precision", "weights", "data", "size", "cars", "seed", "chip", "device", "threads", "loop",
                "actors", "gpus_per_actor")  # what every stage is given, and run= (plan's RUN_TAG)


def check_options(args):
    """``{key: value}`` of every option, each checked alone and with the others (a UserError)."""
    opts = cli.key_values(args, OPTIONS, "scripts/run_all.sh")
    if int(opts["size"]) < 16:
        raise UserError(f"size={opts['size']}: the UNet needs at least 16 x 16 (four 2x poolings)")
    if not opts["cluster"] and (opts["address"] or opts["actors"] or opts["gpus_per_actor"] != "0"):
        raise UserError("address=, actors= and gpus_per_actor= go with cluster=ray")
    flow = "cluster" if opts["cluster"] else "stream" if opts["stream"] == "1" else "files"
    if flow != "files" and opts["labels"] == "none":
        raise UserError(f"{'cluster=ray' if opts['cluster'] else 'stream=1'} scores as it goes: it needs the labels")
    if flow != "files" and opts["unreadable"] == "skip":
        raise UserError("unreadable=skip goes with the file flow (stream=1 and cluster=ray end with an error "
                        "naming the image)")
    return {**opts, "flow": flow, "stream": int(flow != "files")}


def driver_options(args):
    """``{NAME: value}`` of every option, checked, the work folder made (before the run's lock), and
    FLOW, SAMPLED (1: no data=, a sample in WORKDIR/sample), BATCHES and the run's LOCK file."""
    opts = check_options(args)
    work = opts["workdir"]
    if os.path.exists(work) and not os.path.isdir(work):
        raise UserError(f"{work}: exists and is not a folder (workdir= must be a folder)")
    try:
        os.makedirs(work, exist_ok=True)
    except OSError:
        raise UserError(f"{work}: cannot create the work folder") from None
    w = Workdir(os.path.realpath(work))
    opts.update(workdir=w.root, data=os.path.realpath(opts["data"]) if opts["data"] else w.sample,
                sampled=int(not opts["data"]), lock=w.lock, batches=opts["bs"].split(","))
    return {key.upper(): value for key, value in opts.items()}


def driver_plan(args):
    """``stages.plan``'s ``{NAME: value}`` for the options (under the run's lock), and VALUES: what
    every stage is given (``python3 -m unet_infer.stages check``)."""
    from .stages import plan  # the backends: not for the options, asked before the run's lock
    opts = driver_options(args)
    set_quiet(opts["QUIET"] == "1")  # quiet=1: not even backend=auto's line
    values = plan(opts["WORKDIR"], opts["WEIGHTS"], opts["BACKEND"], opts["PRECISION"] or None,
                  [int(bs) for bs in opts["BATCHES"]], opts["FLOW"])
    values["VALUES"] = ["--work", opts["WORKDIR"], "--value", f"run={values['RUN_TAG']}"]
    for key in STAGE_VALUES:
        values["VALUES"] += ["--value", f"{key}={values.get(key.upper(), opts[key.upper()])}"]
    return values


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--help"]:
        return print(USAGE, end="")
    if argv[:1] not in (["options"], ["plan"]):
        raise UserError("usage: python3 -m unet_infer.driver options|plan KEY=VALUE ... (scripts/run_all.sh's)")
    for key, value in (driver_plan if argv[0] == "plan" else driver_options)(argv[1:]).items():
        text = (f"({' '.join(shlex.quote(str(v)) for v in value)})" if isinstance(value, list)  # a shell array
                else shlex.quote(str(value)))
        print(f"{key}={text}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))

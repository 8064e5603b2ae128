"""The streaming flow on Ray Data: decoding in tasks, inference and scoring in a pool of actors
(one per device, or per share of the CPU cores), on this machine or on a running Ray cluster.

  stages 1 and 4-6 for batch size 8 on a local Ray with two actors (one core each here):
    python3 -m unet_infer.cluster --model UNet_bs8.onnx --data ./carvana --batchsize 8 --actors 2 \\
        --result work/result_bs8.txt --summary work/result/bs8_summary.json

  on a running cluster (``ray start --head`` on one host, ``ray start --address=HEAD:6379`` on the
  others, each with RAY_AUTH_MODE=token and the same ~/.ray/auth_token: docs/cluster.md), one
  actor per GPU:
    python3 -m unet_infer.cluster --address auto --gpus-per-actor 1 --model UNet_bs8.onnx \\
        --data /shared/carvana --batchsize 8 --result work/result_bs8.txt --summary work/result/bs8_summary.json

Every node reads the images, masks and model by the paths given here: keep them on storage that
every node mounts at the same path, and this package importable on every node. A local Ray keeps
its files in .ray beside --result (in $TMPDIR, else /tmp, where that path is too long for Ray's
sockets), not in /tmp/ray, and its token out of ~/.ray.

Writes what ``python3 -m unet_infer.stream`` writes, with the same per-image IoU, its summary
merged over the actors (each actor's own under ``devices``): every image scored exactly once,
also when an actor dies or a node is lost. Each planned batch is recorded as its rows come back,
in <result stem>.journal beside --result: the same command after a stop scores only the batches
not recorded, as the stream resumes.
"""

import logging
import os
import time
from pathlib import Path

from .. import cli, session
from ..data import pair_carvana
from ..figures import plural
from ..parallel import cpu_count
from ..formats import natural_key
from ..results import Streamed, check_writable, iou_line
from ..scoring import add_result_flags, finish
from ..summary import build_summary, device_summaries, image_count, merge_summaries, merged_lines, with_keys
from ..journal import Journal, beside, run_key
from . import pipeline, rounds
from .collect import Recorder, plan_batches

log = logging.getLogger(__name__)


def run(args):
    """The whole run; returns ``(result summary, merged ais_bench summary)``."""
    begun = time.perf_counter()
    choice = session.choose(args, "each Ray actor of the cluster")
    choice.model = str(Path(session.model_exists(args.model)).resolve())  # every node reads it by this path
    check_writable(args.result, inputs=[args.data])
    pairs = pair_carvana(args.data)
    plan = plan_batches(pairs, args.batchsize)
    config = {"choice": choice, "batchsize": args.batchsize, "size": args.size, **pipeline.hooks_for_tests()}
    # the options that change the scores; not the actors, their threads or the nodes, which a resumed
    # run may have otherwise (a lost node's actors are gone)
    made_from = {"flow": "cluster", "batchsize": args.batchsize, "size": args.size, "backend": choice.name,
                 "precision": choice.precision, "gpus": bool(args.gpus_per_actor), **choice.options}
    with Journal(beside(args.result), run_key(args.model, args.data, made_from)) as journal:
        recorder = Recorder(journal, plan)
        resumed = {"resumed_images": recorder.tally.scored, "attempts": journal.attempts,
                   "resumed_batches": len(journal.units)}  # after the resume: a record set aside starts afresh
        log.info("%d images in %d batches of %d%s", len(pairs), len(plan), args.batchsize,
                 f", {resumed['resumed_batches']} of them recorded" if resumed["resumed_batches"] else "")
        if recorder.pending():
            ran = rounds.execute(args, config, recorder, len(pairs))
        else:
            log.info("%s: every batch is recorded; nothing is left for Ray", journal.path)
            ran = {"actors": 0, "threads": 0, "ray_start_s": 0.0, "lost_nodes": [], "rounds": []}
        result, summary = finish_run(args, choice, recorder, ran, begun, resumed)
        journal.remove()  # complete: the same command afterwards runs afresh
    for line in closing_lines(summary):
        print(line, flush=True)
    print(iou_line(result), flush=True)
    recorder.tally.check_readable()
    return result, summary


def closing_lines(summary):
    """``summary.merged_lines`` with the wall-clock line (its last) said for the cluster: the actors
    started and how many were given batches, or this attempt's images on a resumed run."""
    lines = merged_lines(summary)
    if summary["resumed_images"]:
        said = (f"{plural(summary['images_this_attempt'], 'image')} scored by this attempt "
                f"({summary['resumed_images']} resumed from the record) / {summary['wall_s']:.3f} s = "
                f"{summary['wall_throughput']:.3f} images/s (attempt {summary['attempts']})")
    else:
        given = len(device_summaries(summary))
        actors = summary["cluster"]["actors"]
        who = plural(actors, "actor") + (f", batches on {given} of them" if given < actors else "")
        said = (f"{plural(image_count(summary), 'image')} / {summary['wall_s']:.3f} s = "
                f"{summary['wall_throughput']:.3f} images/s ({who}, whole run)")
    lines[-1] = f"[INFO] wall-clock throughput: {said}"
    return lines


def finish_run(args, choice, recorder, ran, begun, resumed):
    tally = recorder.tally
    if recorder.duplicates:
        log.warning("%d record(s) of images scored again after a retry were dropped", recorder.duplicates)
    meta = next(iter(tally.parts.values()), {"meta": {}})["meta"]
    keys = {"backend": choice.name, **meta, "model": str(Path(args.model).resolve())}

    def summarize(filesinfo):
        parts = actor_summaries(tally, vars(args))
        times = [t for part in tally.parts.values() for t in part["times"].values()]
        extra = {key: meta.get(key) for key in ("backend", "precision", "machine", "model", "weights")}
        extra.update(mode="cluster", attempts=resumed["attempts"], resumed_images=resumed["resumed_images"],
                     cluster={"address": args.address or "local", "actors": ran["actors"], "threads": ran["threads"],
                              "gpus_per_actor": args.gpus_per_actor,
                              "restarts": sum(part["restarts"] for part in parts),
                              "replaced_actors": replaced_actors(tally, parts, ran["lost_nodes"]),
                              "lost_nodes": ran["lost_nodes"], "rounds": ran["rounds"],
                              "resumed_batches": resumed["resumed_batches"], "ray_start_s": ran["ray_start_s"],
                              "duplicates_dropped": recorder.duplicates})
        wall = time.perf_counter() - begun
        summary = merge_summaries(parts, vars(args), [t[1] for t in times], [t[2] for t in times], wall, os.getpid(),
                                  extra=extra, filesinfo=filesinfo)
        if resumed["resumed_images"]:  # the rate of this attempt: the images it scored over its own wall time
            scored = tally.scored - resumed["resumed_images"]
            with_keys(summary, images_this_attempt=scored, wall_throughput=scored / wall)
        return summary

    return finish(args, tally, keys, summarize)


def actor_summaries(tally, args):
    """One ais_bench summary per actor: the count of its images and the times of its batches."""
    parts = []
    for actor in sorted(tally.parts, key=natural_key):
        part = tally.parts[actor]
        pids = sorted(part["pids"] or {0})
        parts.append(build_summary(Streamed(part["images"]), args, *tally.times(actor), args["batchsize"], pids[-1],
                                   extra={"device_label": actor, "mode": "cluster", **part["meta"], "pids": pids,
                                          "node_ids": part["nodes"], "restarts": len(part["restarted"])}))
    return parts


def replaced_actors(tally, parts, lost):
    """``{actor: why}`` of the actors whose batches others finished: Ray restarted their process
    (``restarted N time(s)``), or their node was lost (``node lost``)."""
    gone = {node["node_id"] for node in lost}
    replaced = {part["device_label"]: f"restarted {part['restarts']} time(s)" for part in parts if part["restarts"]}
    for actor, part in tally.parts.items():
        if gone & set(part["nodes"]):
            replaced[actor] = "node lost" + (f", {replaced[actor]}" if actor in replaced else "")
    return replaced


def build_parser():
    parser = cli.parser("python3 -m unet_infer.cluster", __doc__)
    add = parser.add_argument
    add("--model", "-m", required=True, help=f"model file: {session.model_files()}, at a path every node reads")
    add("--data", required=True, help="Carvana-format folder: train/<stem>.jpg and train_masks/<stem>_mask.gif, "
                                      "at a path every node reads")
    add("--batchsize", type=cli.int_at_least(1), required=True, help="images per model run")
    session.add_model_flags(parser, machine=False)
    add("--address", help="a running Ray cluster: auto (the one this host belongs to) or HOST:PORT; without "
                          f"it: a new local Ray on this machine's {cpu_count()} CPUs, whatever RAY_ADDRESS or "
                          "an earlier `ray start` says, stopped at the end")
    add("--actors", type=cli.int_at_least(1), help="inference actors (without it: one per GPU of the cluster "
                                                   "with --gpus-per-actor, else 1)")
    add(*cli.flag("gpus_per_actor"), dest="gpus_per_actor",
        type=cli.number(float, lambda gpus: gpus >= 0, "is below 0"), default=0,
        help="GPUs each actor reserves, a fraction to share one (default: 0, the actors run on CPUs)")
    add("--threads", type=cli.int_at_least(1), help="CPU threads (and CPUs reserved) per actor (without it: 1 "
                                                    "with GPUs; on CPUs the cluster's CPUs / actors, fewer when "
                                                    "that does not fit the nodes)")
    add("--workers", type=cli.int_at_least(1), help="decoding tasks at a time (without it: the CPUs the actors "
                                                    "leave, at least 1)")
    add_result_flags(parser)
    cli.add_quiet(parser)
    return parser


def main(argv=None):
    session.flow_main(build_parser, run, argv)


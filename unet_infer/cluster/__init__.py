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
every node mounts at the same path, and this package importable on every node.

A local Ray keeps its files (session logs, sockets, spilled objects) in .ray beside --result (the
driver's work folder), not in /tmp/ray, and its token out of ~/.ray.

Writes what ``python3 -m unet_infer.stream`` writes, with the same per-image IoU: --result and the
.json beside it, the worst and best images' masks for the report, and with --summary the ais_bench
summary: merged over the actors (every batch's compute time, the
summary throughput, the wall-clock images/s), each actor's own statistics under ``devices``.
Every image is scored exactly once, also when an actor dies half way, and when
a node is lost: a new pool on the live nodes scores the batches it held.

Resuming: each planned batch is recorded as its rows come back, in <result stem>.journal beside
--result. The same command after a stop (the driver killed, Ctrl-C, every node
lost) scores only the batches not recorded (they are not sent to Ray) and writes the same result
files, byte for byte, and the same masks; the summary adds attempts and resumed_images. A record
of another model, other data or other options is set aside as <name>.stale; a finished run
removes its record.
"""

import logging
import os
import time
from pathlib import Path

from .. import cli, session
from ..cli import UserError
from ..data import pair_carvana
from ..parallel import cpu_count
from ..progress import progress
from ..formats import natural_key
from ..results import Streamed, check_writable, iou_line
from ..scoring import add_result_flags, finish
from ..summary import build_summary, device_summaries, image_count, merge_summaries, merged_lines, with_keys
from ..journal import Journal, beside, run_key
from . import local, rounds
from .collect import Recorder, made_from, plan_batches
from .rounds import actors_fitting

log = logging.getLogger(__name__)


def check_request(args):
    """What can be checked before any Ray work: the backend, its precision and options (the
    model's :class:`session.Choice`), the files."""
    choice = session.choose(args, "each Ray actor of the cluster")
    choice.model = str(Path(session.model_exists(args.model)).resolve())  # every node reads it by this path
    check_writable(args.result, inputs=[args.data])
    if args.address and args.ray_temp:
        raise UserError("--ray-temp is for the local Ray; a running cluster keeps its own folder "
                        "(ray start --temp-dir)")
    return choice


def size_pool(args, nodes):
    """``(actors, threads, decoders)`` for the nodes found (``[(cpus, gpus)]`` each); a request they
    cannot hold is a UserError, before Ray Data would wait for it forever."""
    gpa = args.gpus_per_actor
    cpus, gpus = sum(n[0] for n in nodes), sum(n[1] for n in nodes)
    if gpa and gpus < gpa:
        raise UserError(f"--gpus-per-actor {gpa:g}: the Ray cluster has {gpus:g} GPU(s)")
    actors = args.actors or (actors_fitting(nodes, 1, gpa) if gpa else 1)
    threads = args.threads
    if threads is None:  # the most threads each that still fits, at most an even share of the CPUs
        threads = 1 if gpa else max(1, int(cpus) // actors)
        while threads > 1 and actors_fitting(nodes, threads, gpa) < actors:
            threads -= 1
    if actors_fitting(nodes, threads, gpa) < actors:
        need = f"{threads} CPU(s)" + (f" and {gpa:g} GPU(s)" if gpa else "")
        raise UserError(f"{actors} actor(s) of {need} each do not fit the Ray cluster's nodes "
                        f"({', '.join(f'{c:g} CPUs/{g:g} GPUs' for c, g in nodes)}); lower --actors or --threads")
    decoders = args.workers or max(1, int(cpus) - actors * threads)
    log.info("Ray cluster: %d node(s), %g CPUs, %g GPUs; %d actor(s) x %d thread(s)%s, %d decoding task(s) at a "
             "time", len(nodes), cpus, gpus, actors, threads, f" x {gpa:g} GPU(s)" if gpa else "", decoders)
    return actors, threads, decoders


def execute(args, config, recorder, n_images):
    """Run the Ray Data pipeline on the batches not recorded yet (in rounds: see ``rounds``), collecting
    and recording their rows: ``{"actors", "threads", "ray_start_s", "lost_nodes", "rounds"}``."""
    from . import pipeline
    temp, why = (None, None) if args.address else local.temp_dir(Path(args.result).parent, args.ray_temp)
    begun = time.perf_counter()
    stop = pipeline.connect(args.address, args.quiet, temp)
    ray_start_s = time.perf_counter() - begun  # joining (or starting) Ray, in wall_s but not the pipeline's
    try:
        logs = pipeline.session_logs()
        if stop and temp:
            log.info("local Ray: its files in %s%s; this run's logs: %s", temp, f" ({why})" if why else "", logs)
        nodes = pipeline.live_nodes()
        pool = size_pool(args, list(nodes.values()))
        config["threads"] = pool[1]
        with progress(total=n_images, desc="cluster", unit="img") as bar:
            bar.update(int(recorder.tally.state.astype(bool).sum()))
            done = rounds.run_rounds(pipeline, args, config, recorder, nodes, pool, logs, bar)
        lost = rounds.lost_at_end(pipeline, nodes)
    finally:
        if stop:
            stop()
    if lost:
        log.warning("lost %s during the run; every batch was scored on the others", rounds.describe(lost))
    return {"actors": pool[0], "threads": pool[1], "ray_start_s": ray_start_s, "lost_nodes": lost, "rounds": done}


def run(args):
    """The whole run; returns ``(result summary, merged ais_bench summary)``."""
    from .pipeline import crash_setting, slow_setting
    begun = time.perf_counter()
    choice = check_request(args)
    pairs = pair_carvana(args.data)
    plan = plan_batches(pairs, args.batchsize)
    config = {"choice": choice, "batchsize": args.batchsize,
              "size": args.size, "crash": crash_setting(), "slow": slow_setting()}
    key = run_key(args.model, args.data, made_from(choice.name, choice.precision, args, choice.options))
    with Journal(beside(args.result), key) as journal:
        recorder = Recorder(journal, plan)
        resumed = {"resumed_images": recorder.tally.scored, "attempts": journal.attempts,
                   "resumed_batches": len(journal.units)}  # after the resume: a record set aside starts afresh
        log.info("%d images in %d batches of %d%s", len(pairs), len(plan), args.batchsize,
                 f", {resumed['resumed_batches']} of them recorded" if resumed["resumed_batches"] else "")
        if recorder.pending():
            ran = execute(args, config, recorder, len(pairs))
        else:
            log.info("%s: every batch is recorded; nothing is left for Ray", journal.path)
            ran = {"actors": 0, "threads": 0, "ray_start_s": 0.0, "lost_nodes": [], "rounds": []}
        result, summary = finish_run(args, choice, recorder, ran, begun, resumed)
        journal.remove()  # complete: the same command afterwards runs afresh
    for line in closing_lines(summary, resumed):
        print(line, flush=True)
    print(iou_line(result), flush=True)
    recorder.tally.check_readable()
    return result, summary


def counted(n, noun):
    """``1 actor``, ``2 actors``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def closing_lines(summary, resumed):
    """The merged summary's printout (``summary.merged_lines``) with the cluster's wall-clock line:
    the actors the run started (``cluster.actors``; and how many of them were given batches, where
    fewer), or this attempt's images where some were resumed from the record."""
    lines = merged_lines(summary)
    wall = [i for i, line in enumerate(lines) if line.startswith("[INFO] wall-clock throughput:")]
    if not wall:
        return lines
    if resumed["resumed_images"]:
        said = (f"{counted(summary['images_this_attempt'], 'image')} scored by this attempt "
                f"({resumed['resumed_images']} resumed from the record) / {summary['wall_s']:.3f} s = "
                f"{summary['wall_throughput']:.3f} images/s (attempt {resumed['attempts']})")
    else:
        given = len(device_summaries(summary))
        actors = (summary.get("cluster") or {}).get("actors") or given
        who = counted(actors, "actor") + (f", batches on {given} of them" if given < actors else "")
        said = (f"{counted(image_count(summary), 'image')} / {summary['wall_s']:.3f} s = "
                f"{summary['wall_throughput']:.3f} images/s ({who}, whole run)")
    lines[wall[0]] = f"[INFO] wall-clock throughput: {said}"
    return lines


def finish_run(args, choice, recorder, ran, begun, resumed):
    """``scoring.finish`` with the merged summary."""
    tally = recorder.tally
    if recorder.duplicates:
        log.warning("%d record(s) of images scored again after a retry were dropped", recorder.duplicates)
    meta = next(iter(tally.parts.values()), {"meta": {}})["meta"]
    keys = {"backend": choice.name, **meta, "model": str(Path(args.model).resolve())}

    def summarize(filesinfo):
        parts = actor_summaries(tally, vars(args), args.batchsize)
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
            with_keys(summary, images_this_attempt=scored, wall_throughput=scored / wall if wall > 0 else None)
        return summary

    return finish(args, tally, keys, summarize)


def actor_summaries(tally, args, batchsize):
    """One ais_bench summary per actor: the count of its images and the times of its batches."""
    parts = []
    for actor in sorted(tally.parts, key=natural_key):
        part = tally.parts[actor]
        pids = sorted(part["pids"] or {0})
        parts.append(build_summary(Streamed(part["images"]), args, *tally.times(actor), batchsize, pids[-1],
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


def gpu_share(text):
    """--gpus-per-actor: 0 (CPUs) or a positive number of GPUs (a fraction shares one GPU)."""
    return 0.0 if text.strip() in ("0", "0.0") else cli.positive_float(text)


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
    add(*cli.flag("ray_temp"), dest="ray_temp", metavar="DIR",
        help="the local Ray's temporary folder: its session logs, sockets and spilled objects (without it: .ray "
             f"in the folder of --result, or a folder in $TMPDIR or /tmp when that path is over "
             f"{local.longest_folder()} bytes, too long for Ray's sockets)")
    add("--actors", type=cli.int_at_least(1), help="inference actors (without it: one per GPU of the cluster "
                                                   "with --gpus-per-actor, else 1)")
    add(*cli.flag("gpus_per_actor"), dest="gpus_per_actor", type=gpu_share, default=0,
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


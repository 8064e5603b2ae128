"""The pipeline's run: the pool sized to the live nodes, the rows collected, and the one thing
about a lost node that Ray does not do itself, give up on an actor no live node has room for
(docs/cluster.md, "Every image exactly once"): the rows are read in a thread while the main thread
watches the nodes.
"""

import logging
import queue
import threading
import time
from pathlib import Path

from ..cli import UserError, first_line
from ..progress import progress
from . import local
from .pipeline import MAX_RESTARTS, build_dataset, chain, connect, live_nodes, session_logs

log = logging.getLogger(__name__)

STALL_S = 60.0  # after a node is lost, a run from which no batch came back for this long is ended
POLL_S = 1.0  # how often the driver asks Ray for the live nodes while no batch comes


def actors_fitting(nodes, threads, gpus_per_actor):
    """How many actors of ``threads`` CPUs and ``gpus_per_actor`` GPUs the nodes ``[(cpus, gpus)]`` hold
    (an actor lives on one node)."""
    total = 0
    for cpus, gpus in nodes:
        fit = int(cpus // threads)
        if gpus_per_actor:
            fit = min(fit, int(gpus // gpus_per_actor))
        total += fit
    return total


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
    """Start or join Ray, size the pool to its nodes and run the pipeline on the batches not recorded
    yet, each recorded as it comes back: ``{"actors", "threads", "ray_start_s", "lost_nodes", "rounds"}``."""
    temp, why = (None, None) if args.address else local.temp_dir(Path(args.result).parent)
    begun = time.perf_counter()
    stop = connect(args.address, args.quiet, temp)
    ray_start_s = time.perf_counter() - begun  # joining (or starting) Ray, in wall_s but not the pipeline's
    try:
        logs = session_logs()
        if temp:
            log.info("local Ray: its files in %s%s; this run's logs: %s", temp, f" ({why})" if why else "", logs)
        nodes = live_nodes()
        actors, threads, decoders = size_pool(args, list(nodes.values()))
        config["threads"] = threads
        with progress(total=n_images, desc="cluster", unit="img") as bar:
            bar.update(int(recorder.tally.state.astype(bool).sum()))
            take_rows(build_dataset(recorder.pending(), config, actors, args.gpus_per_actor, decoders),
                      args, threads, recorder, nodes, logs, bar)
        lost = gone(nodes, alive_or(nodes))  # what cannot be asked at the end is not reported
    finally:
        stop()
    if lost:
        log.warning("lost %s during the run; every batch was scored on the others", describe(lost))
    return {"actors": actors, "threads": threads, "ray_start_s": ray_start_s, "lost_nodes": lost,
            "rounds": [{"actors": actors, "threads": threads, "nodes": len(nodes)}]}


def take_rows(ds, args, threads, recorder, nodes, logs, bar):
    """Read the dataset in a thread (Ray Data's wait, kept off the main thread); here, take its rows
    into ``recorder`` and watch the nodes while none comes (see the module notes)."""
    rows, done = queue.Queue(), object()

    def read():
        try:
            for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows.put(block)
            rows.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which says what it was
            rows.put(exc)

    threading.Thread(target=read, name="cluster-rows", daemon=True).start()
    lost_at, last_row = None, time.monotonic()
    while True:
        try:
            block = rows.get(timeout=POLL_S)
        except queue.Empty:  # none came: a lost node whose batches Ray would wait on forever ends the run
            alive = alive_or(nodes)  # where Ray cannot say now: asked again
            lost = gone(nodes, alive)
            if not lost:
                continue
            lost_at = lost_at or time.monotonic()
            if actors_fitting(alive.values(), threads, args.gpus_per_actor) == 0:
                gpus = f" and {args.gpus_per_actor:g} GPU(s)" if args.gpus_per_actor else ""
                raise UserError(f"lost {describe(lost)} of the Ray cluster, and the live nodes "
                                f"({', '.join(f'{c:g} CPUs/{g:g} GPUs' for c, g in alive.values()) or 'none'}) "
                                f"hold no actor of {threads} CPU(s){gpus}; {kept_line(recorder)} once nodes are "
                                f"back; see the Ray logs in {logs}")
            if time.monotonic() - max(lost_at, last_row) >= STALL_S:
                raise UserError(f"the Ray pipeline stalled (lost {describe(lost)}, and no batch came back for "
                                f"{STALL_S:g} s); {kept_line(recorder)}; see the Ray logs in {logs}")
            continue
        if block is done:
            return
        if isinstance(block, BaseException):
            raise failure(block, logs, gone(nodes, alive_or({})), kept_line(recorder)) from None
        last_row = time.monotonic()
        bar.update(recorder.add(block))


def alive_or(default):
    """:func:`live_nodes`, or ``default`` where Ray cannot say (the head unreachable)."""
    try:
        return live_nodes()
    except Exception:  # noqa: BLE001 - what cannot be asked is not known
        return default


def gone(nodes, alive):
    """``[{"node_id", "address"}]`` of the run's ``nodes`` that are not among the ``alive``."""
    return [{"node_id": node_id, "address": address} for node_id, address in nodes if (node_id, address) not in alive]


def describe(lost):
    return f"{len(lost)} node(s) ({', '.join(n['address'] + ' ' + n['node_id'][:8] for n in lost)})"


def kept_line(recorder):
    """What a failed run leaves for the next: ``N of M batches are recorded in X: the same command ...``."""
    return (f"{len(recorder.journal.units)} of {len(recorder.plan)} batches are recorded in {recorder.journal.path}: "
            f"the same command scores the rest")


def failure(exc, logs=None, lost=(), kept=""):
    """The one-line UserError for what ended Ray Data's run, or ``exc`` itself (a bug): a UserError
    that Ray wrapped (an actor whose constructor raised reaches the driver as ActorDiedError with the
    error only in its text), else a Ray system failure (an actor, worker or node that died beyond its
    restarts, memory, scheduling). ``lost``: the nodes lost during the run; ``kept``: what the run's
    record keeps for the next."""
    import ray.exceptions as rex
    marker = f"{UserError.__module__}.{UserError.__name__}: "
    for one in chain(exc):
        for line in reversed(str(one).splitlines()):  # a traceback's last line: the error itself
            if line.startswith(marker):
                return UserError(line[len(marker):])
        if isinstance(one, UserError):
            return UserError(str(one))
    kinds = (rex.RayActorError, rex.WorkerCrashedError, rex.ObjectLostError, rex.OutOfMemoryError,
             rex.NodeDiedError, rex.TaskUnschedulableError, rex.ActorUnschedulableError)
    for one in chain(exc):
        if isinstance(one, kinds):
            first = first_line(one, 300)
            gone_nodes = f"lost {describe(lost)}; " if lost else ""
            return UserError(f"the Ray pipeline failed after {MAX_RESTARTS} actor restarts at most "
                             f"({gone_nodes}{type(one).__name__}: {first}); {kept + '; ' if kept else ''}see the "
                             f"Ray logs in {logs or 'the Ray session folder'} (on each node of a cluster)")
    return exc

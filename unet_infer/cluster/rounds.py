"""The pipeline's run, and the one thing about a lost node that Ray does not do itself.

Ray replaces an actor whose process or node died, on a node with room (``pipeline.MAX_RESTARTS``
times at most), and Ray Data re-runs the batches it held (their retries wait for the replacement:
a lost node's actors are "unavailable" until Ray's health checks declare it dead, in seconds).
What Ray does not do is give up on an actor that no live node has room for: it waits for that
restart forever. So the driver does not wait on Ray Data itself: a thread reads the dataset, and
the main thread takes its rows from a queue, asking Ray for the live nodes every ``POLL_S`` while
none comes. Once a node of the run is lost and the live nodes hold no actor, or no batch came back
for ``STALL_S`` since the loss (some actors have room, others wait), the run ends with one line:
what was lost, and that the same command scores the rest from the record (``collect.Recorder``),
with a pool sized to the nodes it finds then.
"""

import logging
import queue
import threading
import time

from ..cli import UserError

log = logging.getLogger(__name__)

STALL_S = 60.0  # after a node is lost, a run from which no batch came back for this long is ended
POLL_S = 1.0  # how often the driver asks Ray for the live nodes while no batch comes


def run_rounds(pipeline, args, config, recorder, nodes, pool, logs, bar):
    """The pipeline on the batches not recorded yet, each batch collected and recorded as it comes
    back; returns ``[{"actors", "threads", "nodes"}]`` (one round). ``pool``: ``(actors, threads,
    decoders)``."""
    actors, threads, decoders = pool
    ds = pipeline.build_dataset(recorder.pending(), config, actors, args.gpus_per_actor, decoders)
    rows, done = queue.Queue(), object()

    def read():  # Ray Data's wait, kept off the main thread
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
        except queue.Empty:
            lost_at = check_nodes(pipeline, args, nodes, threads, recorder, logs, lost_at, last_row)
            continue
        if block is done:
            break
        if isinstance(block, BaseException):
            raise failure(pipeline, block, nodes, recorder, logs) from None
        last_row = time.monotonic()
        recorder.add(block)
        bar.update(len(block["name"]))
    return [{"actors": actors, "threads": threads, "nodes": len(nodes)}]


def check_nodes(pipeline, args, nodes, threads, recorder, logs, lost_at, last_row):
    """The time a node of ``nodes`` was first seen lost (None while none is), or the one-line
    UserError that ends a run Ray Data would wait on forever."""
    try:
        alive = pipeline.live_nodes()
    except Exception:  # noqa: BLE001 - not known now; asked again
        return lost_at
    lost = gone(nodes, alive)
    if not lost:
        return lost_at
    now = time.monotonic()
    lost_at = lost_at or now
    if actors_fitting(alive.values(), threads, args.gpus_per_actor) == 0:
        raise UserError(no_room(lost, alive, threads, args, recorder, logs))
    if now - max(lost_at, last_row) >= STALL_S:
        raise UserError(f"the Ray pipeline stalled (lost {describe(lost)}, and no batch came back for {STALL_S:g} s); "
                        f"{kept_line(recorder)}; see the Ray logs in {logs}")
    return lost_at


def failure(pipeline, exc, nodes, recorder, logs):
    """The one-line UserError for what ended Ray Data's run, or ``exc`` itself (a bug)."""
    error = pipeline.user_error_in(exc)
    if error is not None:
        return error
    try:
        alive = pipeline.live_nodes()
    except Exception:  # noqa: BLE001 - the head itself unreachable: nothing is known to be alive
        alive = {}
    return pipeline.failure_in(exc, logs, lost=gone(nodes, alive), kept=kept_line(recorder)) or exc


def no_room(lost, alive, threads, args, recorder, logs):
    """The line that ends a run whose live nodes hold no actor: what was lost, what is recorded."""
    return (f"lost {describe(lost)} of the Ray cluster, and the live nodes "
            f"({', '.join(f'{c:g} CPUs/{g:g} GPUs' for c, g in alive.values()) or 'none'}) hold no actor of "
            f"{threads} CPU(s){f' and {args.gpus_per_actor:g} GPU(s)' if args.gpus_per_actor else ''}; "
            f"{kept_line(recorder)} once nodes are back; see the Ray logs in {logs}")


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


def gone(nodes, alive):
    """``[{"node_id", "address"}]`` of the run's ``nodes`` that are not among the ``alive``."""
    return [{"node_id": node_id, "address": address} for node_id, address in nodes if (node_id, address) not in alive]


def lost_at_end(pipeline, nodes):
    """The run's nodes (those at the start) that are gone now."""
    try:
        alive = pipeline.live_nodes()
    except Exception:  # noqa: BLE001 - asked at the end: what cannot be asked is not reported
        return []
    return gone(nodes, alive)


def describe(lost):
    return f"{len(lost)} node(s) ({', '.join(n['address'] + ' ' + n['node_id'][:8] for n in lost)})"


def kept_line(recorder):
    """What a failed run leaves for the next: ``N of M batches are recorded in X: the same command ...``."""
    journal = recorder.journal
    return (f"{len(journal.units)} of {len(recorder.plan)} batches are recorded in {journal.path}: the same command "
            f"scores the rest")

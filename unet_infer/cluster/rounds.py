"""The pipeline in rounds, so that a lost node costs only the batches it held.

Ray replaces an actor whose process died (``pipeline.MAX_RESTARTS``) and Ray Data re-runs its
batches, within one dataset. A node that dies (its raylet killed, the host gone) is different:
until Ray's health checks declare it dead (seconds), its actors are only "unavailable", and the
batches they held use up their retries at once; Ray Data then ends the whole dataset. So the
driver runs the pipeline in rounds: after a round that failed on a Ray system error, it waits
(at most ``NODE_WAIT_S``) for Ray to report a node of the round dead, and when one is and the
live nodes still hold an actor, it starts a new round, a new actor pool on the live nodes (as
many actors as before where they fit), on the batches not recorded yet (``record.Recorder``:
each batch is recorded once, whichever round scored it). Where Ray Data does not end the round
itself (it may wait forever for the restart of a lost node's actor that no live node has room
for), a :class:`Watch` ends it. A failure with no node lost, or with no live node left that holds
an actor, ends the run with one line: what was lost, and that the same command scores the rest
from the record.
"""

import logging
import os
import signal
import sys
import threading
import time

from ..cli import UserError

log = logging.getLogger(__name__)

NODE_WAIT_S = 60.0  # Ray 2.60's health checks declare a dead node in about 15 s (5 checks, 3 s apart)
SETTLE_S = 5.0  # then no other node declared dead for this long: the nodes lost together are all known
STALL_S = 60.0  # after a node is lost, a round from which no batch came back for this long is ended
POLL_S = 1.0  # how often the watch asks Ray for the live nodes
RESEND_S = 3.0  # a SIGINT the main thread has not acted on is sent again after this long
FORCE_S = 20.0  # and after this long the watch ends the run itself, with the run's one-line message
# a failure that may be a node's: its actors unreachable, its objects gone
UNREACHABLE = ("ActorUnavailableError", "NodeDiedError", "ObjectLostError", "ObjectFetchTimedOutError",
               "OwnerDiedError", "Stalled")


def run_rounds(pipeline, args, config, recorder, nodes, pool, logs, bar):
    """Rounds until every planned batch is recorded; returns them: ``[{"actors", "threads", "nodes",
    and for a failed one "error" and "lost_nodes"}]``. ``pool``: ``(actors, threads, decoders)``."""
    actors, threads, decoders = pool
    rounds = []
    while recorder.pending():
        rounds.append({"actors": actors, "threads": threads, "nodes": len(nodes)})
        def stuck(reason, alive, nodes=nodes):  # the line that ends a run whose main thread does not answer
            lost = lost_so_far(rounds) + [{"node_id": node_id, "address": address} for node_id, address in nodes
                                          if (node_id, address) not in alive]
            if lost and actors_fitting(alive.values(), threads, args.gpus_per_actor) == 0:
                return no_room(lost, alive, threads, args, recorder, logs)
            return f"the Ray pipeline stalled ({reason}); {kept_line(recorder)}; see the Ray logs in {logs}"
        try:
            one_round(pipeline, args, config, recorder, (actors, threads, decoders), nodes, bar, stuck)
        except Exception as exc:  # noqa: BLE001 - Ray wraps everything; a UserError inside is the message
            nodes, actors = after_failure(pipeline, exc, nodes, rounds, args, threads, logs, recorder)
    return rounds


class Stalled(RuntimeError):
    """A round the watch ended (see :class:`Watch`)."""


def one_round(pipeline, args, config, recorder, pool, nodes, bar, stuck=None):
    """One Ray Data pipeline over the batches not recorded yet, watched by a :class:`Watch`
    (``stuck(reason, live nodes)``: the one line that ends the run if its SIGINT is not answered)."""
    actors, threads, decoders = pool
    ds = pipeline.build_dataset(recorder.pending(), config, actors, args.gpus_per_actor, decoders)
    watch = Watch(pipeline, nodes, threads, args.gpus_per_actor, stuck)
    watch.start()
    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        while True:
            with watch.lock:  # the watch signals only while this thread waits for Ray Data
                watch.waiting = True
            try:
                rows = next(batches)
            except StopIteration:
                break
            with watch.lock:  # a signal sent before this is raised here at the latest, before the record
                watch.waiting, watch.last_row = False, time.monotonic()
            recorder.collector.add(rows)
            recorder.record(rows)
            bar.update(len(rows["name"]))
        watch.finish()
    except KeyboardInterrupt:
        watch.finish()
        if watch.reason is None:
            raise  # Ctrl-C
        if recorder.pending():
            raise Stalled(watch.reason) from None
    finally:
        watch.finish()
        if hasattr(batches, "close"):
            batches.close()  # Ray Data shuts the round's executor down: its actors go


class Watch(threading.Thread):
    """Ends a round that Ray Data would not end: after a node of the round is lost, Ray waits
    forever for an actor it cannot place again (the restarts of the lost node's actors, when the
    live nodes lack the room). The watch asks Ray for the live nodes every ``POLL_S``; once one of
    the round's is gone, and then the live nodes hold no actor (for ``SETTLE_S``) or no batch came
    back for ``STALL_S``, it sends the driver's main thread a SIGINT (as Ctrl-C would), which
    :func:`one_round` turns into :class:`Stalled`. Only while the round runs (:meth:`finish`).
    Ray Data does not always let the main thread see it (seen once in the every-worker-lost test:
    the wait went on): the SIGINT is sent again every ``RESEND_S``, and after ``FORCE_S`` the watch
    ends the process itself with ``stuck``'s one line and exit status 2. Nothing recorded is lost:
    every batch is in the record once its append returned."""

    def __init__(self, pipeline, nodes, threads, gpus_per_actor, stuck=None):
        super().__init__(name="cluster-watch", daemon=True)
        self.pipeline, self.nodes, self.threads, self.gpus = pipeline, nodes, threads, gpus_per_actor
        self.stuck, self.sent_at, self.resent_at, self.alive = stuck, None, None, {}
        self.lock, self.active, self.waiting, self.reason = threading.Lock(), True, False, None
        self.last_row, self.stopping = time.monotonic(), threading.Event()
        self.main = threading.current_thread() is threading.main_thread()  # elsewhere: no signal to send

    def run(self):
        lost_at = None
        while not self.stopping.wait(POLL_S):
            try:
                alive = self.pipeline.live_nodes()
            except Exception:  # noqa: BLE001 - not known now; asked again
                continue
            self.alive = alive
            now = time.monotonic()
            if self.sent_at is not None:
                self.unanswered(now)
                continue
            if all(node in alive for node in self.nodes):
                continue
            lost_at = lost_at or now
            if now - lost_at >= SETTLE_S and actors_fitting(alive.values(), self.threads, self.gpus) == 0:
                reason = "no live node holds an actor"
            elif now - max(lost_at, self.last_row) >= STALL_S:
                reason = f"no batch came back for {STALL_S:g} s after a node was lost"
            else:
                continue
            with self.lock:
                if self.active and self.waiting and self.main:
                    log.warning("a node of this round is lost and %s: ending the round", reason)
                    self.reason, self.active = reason, False
                    self.sent_at = self.resent_at = now
                    # a real SIGINT to the main thread: it ends the wait Ray Data's iterator is in, as Ctrl-C does
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def unanswered(self, now):
        """After the SIGINT: sent again while the main thread still waits; past ``FORCE_S``, the end."""
        with self.lock:
            if not self.waiting:  # the main thread left the wait: the round ends as designed
                self.stopping.set()
                return
            if now - self.sent_at >= FORCE_S and self.stuck is not None:
                line = f"error: {self.stuck(self.reason, self.alive)}"
                log.warning("the driver did not answer its SIGINT for %g s: ending the run", FORCE_S)
                sys.stdout.flush()
                print(line, file=sys.stderr, flush=True)
                os._exit(2)
            if now - self.resent_at >= RESEND_S:
                self.resent_at = now
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def finish(self):
        with self.lock:
            self.active = self.waiting = False
        self.stopping.set()


def after_failure(pipeline, exc, nodes, rounds, args, threads, logs, recorder):
    """``(live nodes, actors)`` for the next round after ``exc`` ended this one, or the one-line
    UserError that ends the run."""
    error = pipeline.user_error_in(exc)
    if error is not None:
        raise error from None
    if isinstance(exc, Stalled):
        failure = UserError(f"the Ray pipeline stalled ({exc}); {kept_line(recorder)}; see the Ray logs in {logs}")
    else:
        failure = pipeline.failure_in(exc, logs, lost=lost_so_far(rounds), kept=kept_line(recorder))
    if failure is None:
        raise exc
    alive = wait_for_lost(pipeline, nodes) if unreachable(exc) else nodes
    lost = [{"node_id": node_id, "address": address} for node_id, address in nodes if (node_id, address) not in alive]
    rounds[-1].update(error=type(exc).__name__ if not unreachable(exc) else first_kind(exc), lost_nodes=lost)
    if not lost:
        raise failure from None
    fit = actors_fitting(alive.values(), threads, args.gpus_per_actor)
    if fit == 0:
        raise UserError(no_room(lost_so_far(rounds), alive, threads, args, recorder, logs)) from None
    actors = min(rounds[-1]["actors"], fit)
    log.warning("lost %s; a new pool of %d actor(s) on the %d live node(s) scores the %d batch(es) not recorded",
                describe(lost), actors, len(alive), len(recorder.pending()))
    return alive, actors


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


def wait_for_lost(pipeline, nodes, timeout=None, settle=SETTLE_S):
    """The live nodes once Ray reports one of ``nodes`` dead and no other for ``settle`` seconds
    (nodes lost together are declared dead a few seconds apart), or after ``timeout`` (``NODE_WAIT_S``)."""
    deadline = time.monotonic() + (NODE_WAIT_S if timeout is None else timeout)
    last, since = None, None
    while True:
        try:
            alive = pipeline.live_nodes()
        except Exception:  # noqa: BLE001 - the head itself unreachable: nothing is known to be alive
            return {}
        now = time.monotonic()
        if set(alive) != last:
            last, since = set(alive), now
        lost = any(node not in alive for node in nodes)
        if (lost and now - since >= settle) or now > deadline:
            return alive
        time.sleep(0.5)


def unreachable(exc):
    return first_kind(exc) is not None


def first_kind(exc):
    """The name of the first exception in ``exc``'s chain that may mean a node was lost, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if name in UNREACHABLE or (name == "ActorDiedError" and "node" in str(exc).lower()):
            return name
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def lost_so_far(rounds):
    return [node for r in rounds for node in r.get("lost_nodes", [])]


def lost_at_end(pipeline, before, rounds):
    """Every node lost: those the failed rounds reported, and those of ``before`` (the nodes at the
    start) that are gone now."""
    lost = lost_so_far(rounds)
    try:
        alive = pipeline.live_nodes()
    except Exception:  # noqa: BLE001 - asked at the end: what cannot be asked is not reported
        return lost
    known = {node["node_id"] for node in lost}
    return lost + [{"node_id": node_id, "address": address} for node_id, address in before
                   if (node_id, address) not in alive and node_id not in known]


def describe(lost):
    return f"{len(lost)} node(s) ({', '.join(n['address'] + ' ' + n['node_id'][:8] for n in lost)})"


def kept_line(recorder):
    """What a failed run leaves for the next: ``N of M batches are recorded in X: the same command ...``."""
    journal = recorder.journal
    return (f"{len(journal.units)} of {len(recorder.plan)} batches are recorded in {journal.path}: the same command "
            f"scores the rest")

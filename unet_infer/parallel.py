"""One process pool for the package: CPU counts, ``parallel_map`` (a folder of files, any order)
and ``Prefetcher`` (a stream of tasks in order, a bounded number ahead of the consumer).

Workers leave Ctrl-C to the parent; when the parent stops the pool (SIGTERM) a worker unwinds,
so that a file it was writing loses its temporary name; on Linux a killed parent takes its
workers with it.
"""

import ctypes
import multiprocessing
import os
import signal
from collections import deque

from .progress import progress

_PR_SET_PDEATHSIG = 1


def cpu_count():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_decoders():
    """Decoding processes beside a running model: one per CPU but the model's, at least one."""
    return max(1, cpu_count() - 1)


def _unwind(signum, frame):
    raise SystemExit(128 + signum)


def _init_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _unwind)
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError, TypeError):
        pass


def new_pool(workers):
    """A process pool of ``workers`` with this module's worker set-up."""
    return multiprocessing.Pool(workers, initializer=_init_worker)


def stop_pool(pool, finished):
    """Idle workers of a finished pool leave on their own; otherwise (error, Ctrl-C) stop them now."""
    if finished:
        pool.close()
    else:
        pool.terminate()
    pool.join()


def parallel_map(func, items, workers=None, desc="", unit="file"):
    """Yield ``func(item)`` (a module-level function: it is pickled) for every item, in completion
    order, with a progress bar. One worker runs in this process; more run in a pool, in chunks of up
    to 8 items: a small hand-over, and workers that finish together."""
    items = list(items)
    workers = max(1, min(workers or cpu_count(), len(items)))  # None: every CPU
    pool = new_pool(workers) if workers > 1 else None  # forked before the progress bar starts a thread
    finished = False
    try:
        chunksize = max(1, min(8, len(items) // (workers * 8)))
        results = pool.imap_unordered(func, items, chunksize) if pool else map(func, items)
        with progress(total=len(items), desc=desc, unit=unit) as bar:
            for result in results:
                bar.update(1)
                yield result
        finished = True
    finally:
        if pool:
            stop_pool(pool, finished)


class Prefetcher:
    """``func(task)`` for every task, yielded in task order, at most ``ahead`` tasks queued (held in
    memory). Work starts at construction, overlapping what the caller does next (loading a model);
    ``ahead`` may be raised later. Leaving the ``with`` block on an exception stops the workers."""

    def __init__(self, func, tasks, workers, ahead):
        self.func, self.tasks, self.ahead = func, iter(tasks), ahead
        self.queue = deque()
        self.pool = new_pool(workers)
        self._fill()

    def _fill(self):
        while len(self.queue) < self.ahead:
            task = next(self.tasks, None)
            if task is None:
                return
            self.queue.append(self.pool.apply_async(self.func, (task,)))

    def __iter__(self):
        return self

    def __next__(self):
        if not self.queue:
            raise StopIteration
        pending = self.queue.popleft()
        self._fill()
        return pending.get()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        stop_pool(self.pool, finished=exc_type is None and not self.queue)

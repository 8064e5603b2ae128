"""The one inference loop: every flow (the runner's files, its pure-inference mode, the stream,
a Ray actor) feeds it batches and takes the outputs; it owns the warm-up, the upload ahead of
the compute and the timings.

A feed is ``(arrays, tag)``: one array per model input, each the model's whole batch, and
whatever the caller needs back with the outputs (``sink(tag, outputs)``). The loop times
``upload`` as H2D, each of the ``loop`` runs of ``run`` as compute and ``download`` as D2H;
what it takes to make the feeds (reading files, decoding images) is the caller's, timed by the
caller. On a backend with ``async_upload`` (CUDA), batch k+1 is uploaded before batch k runs, so
that the copy overlaps the compute; elsewhere each batch is uploaded when its turn comes.
"""

import time

import numpy as np


class Timings:
    """Milliseconds per call: compute (``run``), H2D (``upload``), D2H (``download``); file I/O totals."""

    def __init__(self):
        self.compute, self.h2d, self.d2h = [], [], []
        self.read_ms = self.write_ms = self.wait_ms = 0.0

    def time(self, bucket, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        getattr(self, bucket).append((time.perf_counter() - start) * 1000.0)
        return result

    def add(self, bucket, started):
        """Add the time since ``started`` (a perf_counter value) to a total: read_ms, write_ms, wait_ms."""
        setattr(self, bucket, getattr(self, bucket) + (time.perf_counter() - started) * 1000.0)


def zeros_like_inputs(backend):
    """One batch of zeros per model input (warm-up data that needs no reading)."""
    return [np.zeros(spec.shape, spec.dtype) for spec in backend.inputs]


def warm_up(backend, arrays, count):
    """Untimed runs, so that lazy initialisation stays out of the timings."""
    if count:
        inputs = backend.upload(*arrays)
        for _ in range(count):
            backend.run(*inputs)


def run_loop(backend, feeds, sink, timings, loop=1, on_run=None):
    """Run every feed ``loop`` times (all timed) and hand the last outputs to ``sink(tag, outputs)``.

    ``feeds`` is any iterable of ``(arrays, tag)`` (a generator may read or decode lazily);
    ``on_run()`` is called after every timed run (a progress bar of runs). Returns the number of
    feeds run.
    """
    overlap = bool(getattr(backend, "async_upload", False))
    feeds = iter(feeds)

    def stage(feed, wait):
        if feed is None:
            return None
        return timings.time("h2d", backend.upload, *feed[0], wait=wait)

    current = next(feeds, None)
    staged = stage(current, wait=not overlap)
    count = 0
    while current is not None:
        if overlap:
            following = next(feeds, None)
            following_staged = stage(following, wait=False)
        for _ in range(loop):
            outputs = timings.time("compute", backend.run, *staged)
            if on_run:
                on_run()
        sink(current[1], timings.time("d2h", backend.download, outputs))
        count += 1
        if not overlap:
            following = next(feeds, None)
            following_staged = stage(following, wait=True)
        current, staged = following, following_staged
    return count

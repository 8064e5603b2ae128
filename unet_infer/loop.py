"""The one inference loop: every flow (the runner's files, its pure-inference mode, the stream,
a Ray actor) feeds it batches and takes the outputs; it owns the warm-up, the upload ahead of
the compute and the timings.

A feed is ``(arrays, tag)``: one array per model input, each the model's whole batch, and
whatever the caller needs back with the outputs (``sink(tag, outputs)``). The loop times
``upload`` as H2D, each run as compute and ``download`` as D2H; making the feeds is the caller's
to time. On a backend with ``async_upload`` (CUDA), batch k+1 is uploaded before batch k runs.
In throughput mode (``async_requests`` = N > 0, openvino ``--nireq N``) each run's compute time
is its request's own (as ais_bench times one run), and ``Timings.loop_ms`` the wall-clock time of
the whole timed loop, from which the summary gives the images/s the N requests delivered together.
"""

import itertools
import time

import numpy as np


class Timings:
    """Milliseconds per call: compute (``run``), H2D (``upload``), D2H (``download``); file I/O totals;
    ``e2e``: the wall time of each batch from end to end, where the caller measures it (the runner)."""

    def __init__(self):
        self.compute, self.h2d, self.d2h, self.e2e = [], [], [], []
        self.read_ms = self.write_ms = self.wait_ms = 0.0
        self.requests = 0  # runs in flight (throughput mode), 0: one at a time
        self.loop_ms = None  # wall-clock time of the timed loops in throughput mode (all of them)

    def time(self, bucket, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        getattr(self, bucket).append((time.perf_counter() - start) * 1000.0)
        return result

    def add(self, bucket, started):
        """Add the time since ``started`` (a perf_counter value) to a total: read_ms, write_ms, wait_ms."""
        setattr(self, bucket, getattr(self, bucket) + (time.perf_counter() - started) * 1000.0)


def warm_up(backend, arrays, count):
    """Untimed runs of ``arrays`` (None: zeros of the inputs' shapes), so that lazy initialisation
    stays out of the timings."""
    if count:
        if arrays is None:
            arrays = [np.zeros(spec.shape, spec.dtype) for spec in backend.inputs]
        inputs = backend.upload(*arrays)
        for _ in range(count):
            backend.run(*inputs)
        for _ in range(count * backend.async_requests):  # every request and stream too
            backend.run_async(inputs, keep=False)
        backend.finished(wait=True)


def run_loop(backend, feeds, sink, timings, loop=1, on_run=None):
    """Run every feed ``loop`` times (all timed) and hand the last outputs to ``sink(tag, outputs)``;
    ``feeds``: any iterable of ``(arrays, tag)`` (a generator may read or decode lazily); ``on_run()``
    after every timed run (a progress bar of runs). Returns the number of feeds run."""
    if backend.async_requests:
        return run_in_flight(backend, feeds, sink, timings, loop, on_run)
    overlap = bool(backend.async_upload)
    staged = ((timings.time("h2d", backend.upload, *arrays, wait=not overlap), tag) for arrays, tag in feeds)
    if overlap:  # batch k is handed over once pairwise has made (uploaded) batch k+1
        staged = (current for current, _ in itertools.pairwise(itertools.chain(staged, [None])))
    count = 0
    for inputs, tag in staged:
        for _ in range(loop):
            outputs = timings.time("compute", backend.run, *inputs)
            if on_run:
                on_run()
        sink(tag, timings.time("d2h", backend.download, outputs))
        count += 1
    return count


def run_in_flight(backend, feeds, sink, timings, loop=1, on_run=None):
    """:func:`run_loop` with ``backend.async_requests`` runs in flight: each feed is uploaded and
    started ``loop`` times as soon as a request is idle; the last run of each feed keeps its
    outputs, handed to ``sink`` in feed order (runs may finish out of order)."""
    timings.requests = backend.async_requests
    started = time.perf_counter()
    waiting, handed = {}, [0]  # feed number -> (tag, outputs) finished early; next feed number to hand over

    def collect(done):
        for (number, tag), keep, outputs, compute_ms in done:
            timings.compute.append(compute_ms)
            if on_run:
                on_run()
            if keep:
                waiting[number] = (tag, outputs)
        while handed[0] in waiting:
            tag, outputs = waiting.pop(handed[0])
            sink(tag, timings.time("d2h", backend.download, outputs))
            handed[0] += 1

    count = 0
    for arrays, tag in feeds:
        inputs = timings.time("h2d", backend.upload, *arrays)
        for run in range(loop):
            backend.run_async(inputs, (count, tag), keep=run == loop - 1)
            collect(backend.finished())
        count += 1
    collect(backend.finished(wait=True))
    timings.loop_ms = (timings.loop_ms or 0.0) + (time.perf_counter() - started) * 1000.0
    return count


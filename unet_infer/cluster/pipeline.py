"""The Ray side of the cluster run: the Ray Data graph, and joining (or starting) Ray. Ray is
imported here only, inside the functions.

The graph (docs/cluster.md, "What runs where"): the batch plan -> ``decode_batch`` tasks, one
model batch each -> ``InferActor``s, each running its batches through ``loop.run_loop`` and
``scoring.Scorer`` -> one small row per batch to the driver, its unit (never logits).
"""

import json
import logging
import os
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..cli import UserError, stderr_quiet
from ..data import decode, pack_batch
from ..loop import Timings, run_loop
from ..parallel import cpu_count
from ..scoring import Scorer
from ..session import WARMUP_RUNS
from . import local

# Ray Data's own default is unbounded; a crash that repeats should end the run, not loop.
MAX_RESTARTS = 3  # replacements per actor
PROBE_S = 5.0  # how long the driver waits for a cluster's port to answer before ray.init
QUIET_ENV = "RAY_BACKEND_LOG_LEVEL"  # --quiet: fatal, Ray's C++ logging (core_worker.cc ... lines on stderr)

CRASH_ENV = "UNET_INFER_TEST_KILL_ACTOR"  # tests only: "FLAG_FILE:BATCH", see InferActor.crash_once
SLOW_ENV = "UNET_INFER_TEST_SLOW_BATCH"  # tests only: seconds each actor waits per batch (to stop a run half way)


def hooks_for_tests():
    """The actors' test settings, read by the driver: ``crash`` (flag file, batch), ``slow`` (seconds)."""
    flag, _, batch = os.environ.get(CRASH_ENV, "").rpartition(":")
    return {"crash": (flag, int(batch)) if flag else None, "slow": float(os.environ.get(SLOW_ENV) or 0)}


def decode_batch(rows, size, batchsize):
    """``map_batches`` task: plan rows -> ``{batch, n, paths, image, label, bad}`` (fixed shapes; the
    ``n`` readable images first, the unreadable ones named in ``bad``)."""
    out = {key: [] for key in ("batch", "n", "paths", "image", "label", "bad")}
    for k, images, labels in zip(rows["batch"], rows["images"], rows["labels"]):
        image = np.zeros((batchsize, 3, size, size), np.float32)
        label = np.zeros((batchsize, size, size), bool)
        paths, bad, n = [""] * batchsize, [], 0
        for image_path, label_path in zip(images, labels):
            decoded, mask, why = decode((str(image_path), str(label_path), size))
            if why is not None:
                bad.append(f"{image_path}\t{why}")
                continue
            image[n], label[n], paths[n] = decoded, mask, str(image_path)
            n += 1
        for key, value in (("batch", int(k)), ("n", n), ("paths", paths), ("image", image), ("label", label),
                           ("bad", "\n".join(bad))):
            out[key].append(value)
    return {key: np.array(value) for key, value in out.items()}


class InferActor:
    """One model on one device (or share of the CPU cores); see the module notes."""

    def __init__(self, config):
        self.config = config  # its "choice": the driver's session.Choice, checked there
        self.opened = config["choice"].open(batchsize=config["batchsize"], device=0, threads=config["threads"],
                                            size=config["size"], image_size=config["size"], warmup=WARMUP_RUNS,
                                            flow="the cluster")
        self.backend = self.opened.backend
        self.timings = Timings()
        self.scorer = Scorer(self.backend.batchsize, config["size"])  # its extremes: this actor's so far
        import ray  # in an actor process, Ray is there already
        context = ray.get_runtime_context()
        with warnings.catch_warnings():  # Ray 2.60's own property reads its deprecated actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = context.was_current_actor_reconstructed
        # the actor's id survives a restart: one name per actor (per device), whatever its process;
        # its model: the path every node reads, as the driver resolved it
        self.process = {"actor": f"{socket.gethostname()}:actor-{context.get_actor_id()[:8]}", "pid": os.getpid(),
                        "restarted": restarted, "node_id": context.get_node_id(),
                        "meta": {**self.opened.summary_keys(), "model": config["choice"].model,
                                 "node": socket.gethostname(), "device": self.backend.device_name()}}

    def __call__(self, rows):
        """Decoded batches -> ``{"batch", "unit"}``: each batch's index and its unit as JSON (its
        records and masks, its unreadable images, its times, this actor and its process)."""
        spec, feeds, units = self.backend.inputs[0], [], {}
        for r in range(len(rows["batch"])):
            batch, n = int(rows["batch"][r]), int(rows["n"][r])
            bad = [line.split("\t", 1) for line in str(rows["bad"][r]).splitlines()]
            units[batch] = {"records": [], "masks": {}, "bad": [[Path(path).stem, why] for path, why in bad]}
            if n:
                items = [(str(path), rows["label"][r][slot]) for slot, path in enumerate(rows["paths"][r][:n])]
                feeds.append(([pack_batch(spec, rows["image"][r][:n])], (batch, items)))

        def sink(tag, outputs):
            records, masks = self.scorer(tag[1], outputs)
            j = len(self.timings.d2h) - 1
            ms = [self.timings.compute[j], self.timings.h2d[j], self.timings.d2h[j]]
            units[tag[0]].update(records=records, masks=masks, ms=ms, **self.process)

        run_loop(self.backend, feeds, sink, self.timings)
        time.sleep(self.config["slow"] * len(feeds))
        self.crash_once([batch for _, (batch, _) in feeds])
        return {"batch": np.array(list(units)), "unit": np.array([json.dumps(unit) for unit in units.values()])}

    def crash_once(self, batches):
        """Tests only (``UNET_INFER_TEST_KILL_ACTOR=FLAG:K``): the first actor to finish scoring batch K
        creates FLAG, writes its pid there and kills its own process before its rows are returned."""
        crash = self.config["crash"]
        if not crash or crash[1] not in batches:
            return
        try:
            fd = os.open(crash[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os._exit(1)


def build_dataset(plan, config, actors, gpus_per_actor, decoders):
    """The lazy dataset of the module notes; iterating it runs the pipeline."""
    import ray
    ds = ray.data.from_items(plan, override_num_blocks=len(plan))  # one model batch per block
    ds = ds.map_batches(decode_batch, batch_size=1, batch_format="numpy", num_cpus=0,
                        compute=ray.data.TaskPoolStrategy(size=decoders),
                        fn_kwargs={"size": config["size"], "batchsize": config["batchsize"]})
    with warnings.catch_warnings():
        # Ray 2.60 warns that ray_remote_args go in 2.64; bounded restarts have no named parameter yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(InferActor, batch_size=1, batch_format="numpy", fn_constructor_args=(config,),
                            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=config["threads"],
                            num_gpus=gpus_per_actor or None, max_restarts=MAX_RESTARTS)
    return ds


# ---- joining or starting Ray -----------------------------------------------------------------------

def probe(address):
    """A cluster's ``HOST:PORT`` must answer a TCP connect before ``ray.init``, which would retry for
    minutes (``auto`` is Ray's to find), else a one-line UserError."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address}: expected auto or HOST:PORT (the head's `ray start --port`)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
    except OSError as exc:
        why = "no answer in %g s" % PROBE_S if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise UserError(f"cannot join the Ray cluster at {address}: nothing answers there ({why}); is its head "
                        f"running (`ray start --head --port={port}`) and the port open?") from None


def chain(exc):
    """``exc`` and the exceptions behind it (a Ray error's ``cause``, then Python's), each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__


def auth_error(address, exc):
    """A one-line UserError when joining ``address`` failed on token authentication, else None."""
    import ray.exceptions as rex
    fix = (f"the cluster's token in ~/.ray/auth_token, or {local.TOKEN_PATH_ENV} naming its file (docs/cluster.md, "
           f"Two hosts)")
    if any(isinstance(one, rex.AuthenticationError) and "no authentication token" in str(one) for one in chain(exc)):
        return UserError(f"cannot join the Ray cluster at {address}: {local.MODE_ENV}=token but this host has no "
                         f"token; put {fix}")
    if not any("InvalidAuthToken" in str(one) for one in chain(exc)):
        return None
    if os.environ.get(local.MODE_ENV, "").lower() != "token":
        return UserError(f"cannot join the Ray cluster at {address}: it requires token authentication "
                         f"(InvalidAuthToken) and {local.MODE_ENV} is not token here; export "
                         f"{local.MODE_ENV}=token with {fix}")
    return UserError(f"cannot join the Ray cluster at {address}: it refused this host's token (InvalidAuthToken); "
                     f"use {fix}")


@contextmanager
def quiet_init(quiet):
    """Around ``ray.init`` with ``quiet``: ``QUIET_ENV=fatal`` unless the user set it (read by the
    processes it starts), and file descriptor 2, where Ray's C++ side writes, to /dev/null."""
    if not quiet:
        yield
        return
    added = QUIET_ENV not in os.environ
    os.environ.setdefault(QUIET_ENV, "fatal")
    try:
        with stderr_quiet():
            yield
    finally:
        if added:
            os.environ.pop(QUIET_ENV)


def connect(address, quiet, temp_dir=None):
    """Join the cluster at ``address``, or start a new local Ray on this machine's cores (None), its
    files in ``temp_dir``; returns the function that stops it (for a cluster: disconnects). The
    actors' output comes to stderr, colourless unless it is a terminal; ``quiet``: none of it, and
    of Ray's own logging errors only (docs/cluster.md)."""
    import ray
    from ray.data import DataContext
    context = DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.max_consecutive_actor_init_deaths = 0  # a model that cannot load is an error, not a loop
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read as each actor line is printed
    level = logging.ERROR if quiet else logging.WARNING
    if quiet:
        logging.getLogger("ray.data").setLevel(level)  # its per-run INFO lines, "Progress bars disabled"
    if address:
        probe(address)
        kwargs, token = {"address": address}, False
    else:  # "local": a new Ray, whatever RAY_ADDRESS or the last `ray start` of this machine says
        kwargs = {"address": "local", "num_cpus": cpu_count(), "_temp_dir": str(temp_dir) if temp_dir else None}
        local.check_gcs_port()
        local.loopback_only()
        token = local.provide_token()

    def stop():
        ray.shutdown()
        if token:
            os.environ.pop(local.TOKEN_ENV, None)

    try:
        with quiet_init(quiet):
            ray.init(include_dashboard=False, logging_level=level, log_to_driver=not quiet, **kwargs)
    except BaseException as exc:
        stop()  # whatever it had started
        if not isinstance(exc, (ConnectionError, RuntimeError, ValueError, OSError)):
            raise
        error = auth_error(address, exc) if address else None
        if error is not None:
            raise error from None
        why = str(exc).strip().splitlines()[0].strip(" :") if str(exc).strip() else type(exc).__name__
        if address:
            raise UserError(f"cannot join the Ray cluster at {address} ({why})") from None
        raise UserError(f"cannot start a local Ray ({why}); see its logs in "
                        f"{Path(temp_dir or '/tmp/ray') / 'session_latest' / 'logs'}") from None
    return stop


def session_logs():
    """The log folder of this process's Ray session (on this node)."""
    import ray
    context = ray.get_runtime_context()
    return Path(context.get_temp_dir()) / context.get_session_name() / "logs"


def live_nodes():
    """``{(node id, address): (CPUs, GPUs)}`` of every live node of the cluster."""
    import ray
    return {(node["NodeID"], node.get("NodeManagerAddress", "")): (float(node["Resources"].get("CPU", 0)),
                                                                   float(node["Resources"].get("GPU", 0)))
            for node in ray.nodes() if node.get("Alive")}

"""A Ray cluster of three nodes on this machine, set up by docs/cluster.md's two-host recipe as
written (token authentication on every node): a head with no CPUs and two worker nodes, each a
``ray start --block`` process group of its own (its own ports, --node-ip-address=127.0.0.1, a
HOME of the test's, so nothing is written in the real ~/.ray), the driver joining with --address.

- the actors spread over both workers; one worker node killed (its whole process group, kill -9)
  while it holds batches: the run completes on the other, every image once with the
  single-process stream's IoU, and the summary names the lost node and the replaced actor;
- every worker killed: a one-line error (what was lost, that the same command resumes), exit 2;
  with a worker back, the same command resumes from the record;
- a driver without the token, and an address where nothing answers: one-line errors, exit 2.

Every Ray process the tests start is stopped by its process group (and, for the workers Ray
starts in groups of their own, by the test's own temporary folder on their command line).
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_cluster_resume import (BAD, N_BATCHES, check_resumed, cluster_argv, data, ended, kill_by_folder,  # noqa: F401
                                 model, outputs, per_image, reference, start, summary_of, wait_for_units)
from unet_infer.cluster import pipeline
from unet_infer.journal import scan

import ray  # noqa: E402,F401 - requirements.txt installs it: missing is a failure, not a skip

ROOT = Path(__file__).resolve().parents[1]
WORKER_CPUS = 2  # each worker holds both actors, so that one worker left can finish the run
SLOW = "0.4"  # seconds per batch in the actors, so that a node can be killed while it holds batches
# Ray's health checks, faster than its defaults (a dead node declared in about 3 s, not 15)
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
          "RAY_health_check_failure_threshold": "3"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recipe():
    """The shell lines of docs/cluster.md's two-host recipe (the bash block with ``ray start --head``)."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        if "ray start --head" in block:
            lines = [line.split(" #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
            return [line for line in lines if line and not line.startswith("#")]
    raise AssertionError("docs/cluster.md has no bash block with `ray start --head`")


class RayNodes:
    """The recipe's nodes on this machine: ``setup()`` runs its token lines, ``head()`` and
    ``worker()`` its ``ray start`` lines (hostA -> 127.0.0.1, the recipe's port -> a free one,
    this machine's small resources, and the flags that let several nodes share one machine)."""

    def __init__(self, root):
        self.root = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))  # short: Ray's socket paths
        self.home = Path(root) / "home"
        self.home.mkdir()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        self.env.update(HOME=str(self.home), RAY_USAGE_STATS_ENABLED="0", UNET_INFER_QUIET="1", **HEALTH)
        self.port, self.nodes, self.lines = free_port(), {}, recipe()

    def setup(self):
        """The recipe's lines before the first ``ray start``: exports and the token."""
        for line in self.lines:
            if line.startswith("ray start"):
                break
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                self.env[key] = value
            elif line.split()[0] in ("scp", "ssh"):
                continue  # copying the token to the other hosts: here every node shares this HOME
            else:
                subprocess.run(["bash", "-c", line], env=self.env, check=True, capture_output=True, timeout=60)

    def start_line(self, head):
        line = next(line for line in self.lines if line.startswith("ray start") and ("--head" in line) == head)
        words = [w for w in shlex.split(line) if not w.startswith(("--num-cpus", "--num-gpus", "--port", "--address"))]
        return words

    def start(self, name, head):
        own = ["--port=%d" % self.port, "--num-cpus=0", "--include-dashboard=false"] if head else [
            f"--address=127.0.0.1:{self.port}", f"--num-cpus={WORKER_CPUS}"]
        ports = [f"--{flag}={free_port()}" for flag in (
            "node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
            "metrics-export-port", "runtime-env-agent-port")]
        argv = [*self.start_line(head), *own, "--block", "--node-ip-address=127.0.0.1",
                f"--temp-dir={self.root / 'ray'}", f"--object-store-memory={80 * 2 ** 20}", "--disable-usage-stats",
                "--min-worker-port=0", "--max-worker-port=0", *ports]
        log = open(self.root / f"{name}.log", "w")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.nodes[name] = proc
        self.wait_started(name)
        return proc

    def wait_started(self, name, timeout=120):
        deadline, log = time.monotonic() + timeout, self.root / f"{name}.log"
        while time.monotonic() < deadline:
            if "Ray runtime started" in log.read_text():
                return
            if self.nodes[name].poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"ray node {name} did not start:\n{log.read_text()[-3000:]}")

    def kill(self, name):
        """kill -9 of the node's process group (its raylet, agents, and the head's GCS)."""
        proc = self.nodes.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self):
        for name in list(self.nodes):
            self.kill(name)
        self.kill_strays()
        shutil.rmtree(self.root, ignore_errors=True)

    def node_id(self, name):
        """The Ray node id of a node: its raylet's ``--node_id``, in the node's process group."""
        group = self.nodes[name].pid
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.getpgid(int(entry.name)) == group:
                    found = re.search(rb"--node_id=([0-9a-f]+)", (entry / "cmdline").read_bytes())
                    if found:
                        return found.group(1).decode()
            except OSError:
                continue
        raise AssertionError(f"no raylet in node {name}'s process group")

    def kill_strays(self):
        """Ray's worker processes run in process groups of their own: those whose output goes to this
        cluster's folder (their logs in its session folder), and only those, are killed by pid."""
        kill_by_folder(self.root)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The recipe's head and two workers, stopped at the end (each by its process group)."""
    nodes = RayNodes(tmp_path_factory.mktemp("cluster_nodes"))
    try:
        nodes.setup()
        nodes.start("head", head=True)
        nodes.start("w1", head=False)
        nodes.start("w2", head=False)  # not both at once: a loaded machine times their start out
        yield nodes
    finally:
        nodes.stop()


def test_the_recipe_sets_up_token_authentication_on_every_node():
    lines = recipe()
    assert "export RAY_AUTH_MODE=token" in lines[:lines.index(next(l for l in lines if l.startswith("ray start")))]
    assert any(line.startswith("ray get-auth-token --generate") for line in lines)


def test_the_actors_spread_over_both_workers_and_one_is_lost_mid_run(cluster, model, data, reference, tmp_path):
    """One actor on each worker (none on the head), both scoring; then kill -9 of worker w2's process
    group while its actor holds batches: the run completes on w1 (Ray restarts the lost actor there)
    with the stream's files. The next tests run with w1 alone."""
    workers = {cluster.node_id("w1"), cluster.node_id("w2")}
    lost, record, units = cluster.node_id("w2"), tmp_path / "result_bs2.journal", {}
    proc = start(cluster_argv(model, data, tmp_path, "--address", cluster.address),
                 {**cluster.env, pipeline.SLOW_ENV: SLOW})  # slow: both actors get batches before the kill
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:  # until both workers' actors recorded batches
            units = scan(record.read_bytes()).units if record.is_file() else {}
            if {unit.extra.get("node_id") for unit in units.values()} >= workers:
                break
            time.sleep(0.05)
    finally:
        cluster.kill("w2")
        status, out = ended(proc)
    assert {unit.extra.get("node_id") for unit in units.values()} >= workers, out[-3000:]
    assert len(units) < N_BATCHES and status == 2, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("error: 1 unreadable image(s)"), out[-3000:]
    assert outputs(tmp_path) == outputs(reference)  # every image once, the stream's IoU
    assert [name for name, _, _ in per_image(tmp_path)] == [s for i, s in enumerate(data.stems) if i != BAD]
    summary = summary_of(tmp_path)
    assert summary["cluster"]["address"] == cluster.address and summary["attempts"] == 1
    assert {node for part in summary["devices"] for node in part["node_ids"]} == workers  # none on the head
    assert [node["node_id"] for node in summary["cluster"]["lost_nodes"]] == [lost]
    replaced = [part for part in summary["devices"] if lost in part["node_ids"]]
    assert replaced and {p["device_label"] for p in replaced} <= set(summary["cluster"]["replaced_actors"])
    assert all(why.startswith("node lost") for why in summary["cluster"]["replaced_actors"].values())


def test_every_worker_lost_then_the_same_command_with_a_worker_back(cluster, model, data, reference, tmp_path):
    argv = cluster_argv(model, data, tmp_path, "--address", cluster.address)
    record = tmp_path / "result_bs2.journal"
    workers = [n for n in cluster.nodes if n != "head"]  # w1 after the test above; w1 and w2 alone
    proc = start(argv, {**cluster.env, pipeline.SLOW_ENV: SLOW})
    try:
        wait_for_units(record, 3, proc)
    finally:
        for name in workers:
            cluster.kill(name)
        status, out = ended(proc)
    last = out.strip().splitlines()[-1]
    expected = (rf"error: lost {len(workers)} node\(s\) \(.*\) of the Ray cluster, and the live nodes \(0 CPUs/0 "
                r"GPUs\) hold no actor of 1 CPU\(s\); \d+ of 12 batches are recorded in .*result_bs2.journal: the "
                r"same command scores the rest")
    assert status == 2 and re.match(expected, last), out[-3000:]
    units = scan(record.read_bytes()).units
    assert 0 < len(units) < N_BATCHES and not (tmp_path / "result_bs2.txt").exists()

    cluster.start("w4", head=False)
    status, out = ended(start(argv, cluster.env))
    assert status == 2 and out.strip().splitlines()[-1].startswith("error: 1 unreadable image(s)"), out[-3000:]
    check_resumed(tmp_path, reference, data, units)


def test_a_driver_without_the_token_is_refused_in_one_line(cluster, model, data, tmp_path):
    env = {key: value for key, value in cluster.env.items() if key != "RAY_AUTH_MODE"}
    env.update(HOME=str(tmp_path), RAY_gcs_server_port_wait_time_s="2")  # Ray's retries: 2 s, not 20
    status, out = ended(start(cluster_argv(model, data, tmp_path / "work", "--address", cluster.address), env),
                        timeout=120)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert status == 2 and errors == [
        f"error: cannot join the Ray cluster at {cluster.address}: it requires token authentication "
        f"(InvalidAuthToken) and RAY_AUTH_MODE is not token here; export RAY_AUTH_MODE=token with the cluster's "
        f"token in ~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH naming its file (docs/cluster.md, Two hosts)"], out[-3000:]
    assert errors[0] == out.strip().splitlines()[-1]
    assert not (tmp_path / ".ray").exists()


# ---- a Ray that cannot start or be reached ------------------------------------------------------

def test_an_address_where_nothing_answers(model, data, tmp_path):
    port = free_port()  # closed again: nothing listens there
    began = time.monotonic()
    status, out = ended(start(cluster_argv(model, data, tmp_path, "--address", f"127.0.0.1:{port}"), dict(os.environ)),
                        timeout=60)
    assert status == 2 and out.strip().splitlines()[-1] == (
        f"error: cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers there (Connection refused); is "
        f"its head running (`ray start --head --port={port}`) and the port open?"), out[-3000:]
    assert time.monotonic() - began < 30


def test_a_local_ray_whose_port_is_taken(model, data, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "RAY_GCS_SERVER_PORT": str(port), "HOME": str(tmp_path)}
        status, out = ended(start(cluster_argv(model, data, tmp_path / "work"), env), timeout=60)
    assert status == 2 and out.strip().splitlines()[-1] == (
        f"error: cannot start a local Ray: its GCS port 127.0.0.1:{port} (RAY_GCS_SERVER_PORT) is taken (Address "
        f"already in use); unset RAY_GCS_SERVER_PORT for a free one"), out[-3000:]

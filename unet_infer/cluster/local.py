"""The local Ray that ``python3 -m unet_infer.cluster`` starts without --address, so that a run leaves
nothing in /tmp/ray or the user's home and listens on the loopback only (Ray 2.60):

- its temporary folder (session logs, sockets, spilled objects) is ``.ray`` in the work folder (a
  dot name: the driver's stage fingerprints skip it). Ray's Unix sockets go at
  ``<folder>/session_<date>_<time>_<µs>_<pid>/sockets/plasma_store``, at most 107 bytes on Linux
  (103 on macOS): under a deeper work folder it is ``unet-ray-<hash of the work folder>`` in
  TMPDIR (``tempfile``'s), or in /tmp when that is too deep too;
- Ray turns token authentication on for a new local cluster and, finding no token, writes one to
  ``~/.ray/auth_token``: where the user has none, this run's own goes in RAY_AUTH_TOKEN instead,
  which Ray's processes inherit, and is removed when the run stops its Ray;
- Ray's servers listen on the loopback only when the node's address is 127.0.0.1, which on Linux
  Ray replaces with the host's address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (the single-node
  mode of Windows and macOS): the local Ray is started so.
"""

import hashlib
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

from ..cli import UserError

RAY_DIR = ".ray"
FALLBACK_PREFIX = "unet-ray-"
SOCKET_MAX = 103 if sys.platform == "darwin" else 107  # bytes of an AF_UNIX path (sun_path less its NUL)
# the longest path Ray 2.60 puts under its folder: a 7-digit pid, the second plasma socket
SOCKET_TAIL = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store.99")
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
MODE_ENV = "RAY_AUTH_MODE"  # token: this process (and the Ray it starts or joins) authenticates
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's: 0, a single-node Ray on 127.0.0.1


def fits(folder):
    """Whether Ray's sockets under ``folder`` stay within the AF_UNIX path limit."""
    return len(os.fsencode(str(folder))) + SOCKET_TAIL <= SOCKET_MAX


def longest_folder():
    """The longest temporary folder (in bytes) that Ray's sockets fit under."""
    return SOCKET_MAX - SOCKET_TAIL


def temp_dir(work):
    """``(folder, why)``: the local Ray's temporary folder for the work folder ``work`` (see the
    module notes), and None or the reason it is not under the work folder."""
    folder = Path(work).resolve() / RAY_DIR
    if fits(folder):
        return folder, None
    name = FALLBACK_PREFIX + hashlib.sha1(os.fsencode(str(folder.parent))).hexdigest()[:8]
    base = Path(tempfile.gettempdir()) if fits(Path(tempfile.gettempdir()) / name) else Path("/tmp")
    return base / name, f"{folder} is too long a path for Ray's sockets ({longest_folder()} bytes at most)"


def loopback_only(environ=os.environ):
    """Before a local Ray starts: its node address 127.0.0.1, its servers on the loopback only."""
    environ[LOOPBACK_ENV] = "0"  # read by the processes it starts and by a driver that joins it
    from ray._private import ray_constants  # the same setting, read when it is imported: ray is
    ray_constants.ENABLE_RAY_CLUSTER = False


def provide_token(environ=os.environ):
    """Give a new local Ray a token in RAY_AUTH_TOKEN when the user has none (see the module notes);
    returns whether it did."""
    if environ.get(TOKEN_ENV) or environ.get(TOKEN_PATH_ENV) or (Path.home() / ".ray" / "auth_token").is_file():
        return False
    environ[TOKEN_ENV] = secrets.token_hex(32)
    return True


GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"  # Ray's: the local Ray's GCS port (without it: a free one)


def check_gcs_port(environ=os.environ):
    """A GCS port set in RAY_GCS_SERVER_PORT that is taken would fail a local Ray only after about
    40 s of Ray's retries: a UserError naming the port instead."""
    value = environ.get(GCS_PORT_ENV)
    if not value:
        return
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise UserError(f"{GCS_PORT_ENV}={value!r}: expected a port number")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", int(value)))  # where the local Ray listens
        except OSError as exc:
            raise UserError(f"cannot start a local Ray: its GCS port 127.0.0.1:{value} ({GCS_PORT_ENV}) is taken "
                            f"({exc.strerror or exc}); unset {GCS_PORT_ENV} for a free one") from None

"""The local Ray that ``python3 -m unet_infer.cluster`` starts without --address leaves nothing in
/tmp/ray or the user's home and listens on the loopback only (Ray 2.60):

- its files go in ``.ray`` in the work folder (a dot name: the stage fingerprints skip it), or,
  where that is too deep for Ray's Unix sockets (107 bytes on Linux, 103 on macOS), in
  ``unet-ray-<hash of the work folder>`` in TMPDIR, else /tmp;
- where the user has no token, this run's own goes in RAY_AUTH_TOKEN (Ray would write one to
  ``~/.ray/auth_token``), inherited by Ray's processes and removed when the run stops its Ray;
- RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps the node's address 127.0.0.1, which on Linux Ray
  otherwise replaces with the host's, so that its servers bind the loopback only.
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


LONGEST_FOLDER = SOCKET_MAX - SOCKET_TAIL  # bytes of the deepest folder Ray's sockets fit under
GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"  # Ray's: the local Ray's GCS port (without it: a free one)


def fits(folder):
    return len(os.fsencode(str(folder))) <= LONGEST_FOLDER


def temp_dir(work):
    """``(folder, why)``: the local Ray's folder for the work folder ``work``, and None or the reason
    it is not under the work folder."""
    folder = Path(work).resolve() / RAY_DIR
    if fits(folder):
        return folder, None
    name = FALLBACK_PREFIX + hashlib.sha1(os.fsencode(str(folder.parent))).hexdigest()[:8]
    base = Path(tempfile.gettempdir()) if fits(Path(tempfile.gettempdir()) / name) else Path("/tmp")
    return base / name, f"{folder} is too long a path for Ray's sockets ({LONGEST_FOLDER} bytes at most)"


def loopback_only():
    """Before a local Ray starts: its node address 127.0.0.1, its servers on the loopback only."""
    os.environ[LOOPBACK_ENV] = "0"  # read by the processes it starts and by a driver that joins it
    from ray._private import ray_constants  # the same setting, read when it is imported: ray is
    ray_constants.ENABLE_RAY_CLUSTER = False


def provide_token(environ=os.environ):
    """A token in RAY_AUTH_TOKEN for a new local Ray where the user has none; returns whether it gave one."""
    if environ.get(TOKEN_ENV) or environ.get(TOKEN_PATH_ENV) or (Path.home() / ".ray" / "auth_token").is_file():
        return False
    environ[TOKEN_ENV] = secrets.token_hex(32)
    return True


def check_gcs_port():
    """A taken GCS port in RAY_GCS_SERVER_PORT, which fails a local Ray only after about 40 s of
    Ray's retries: a UserError naming it at once."""
    value = os.environ.get(GCS_PORT_ENV)
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

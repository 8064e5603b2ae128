"""The record of a scoring run's finished units (batches: the stream's in order, the cluster's in any
order), so that a stopped run resumes where it stopped. One append-only file of lines
``<json>\\t<crc32 of the json, 8 hex digits>\\n``:

- a header, ``{"journal": "unet_infer", "version": 2, "key": {part: hash}}``: what the run is made
  from (:func:`run_key`), one sha256 prefix per part;
- ``{"attempt": n, "pid": ..., "started": ...}``: a run that recorded units (written with its first);
- ``{"unit": id, "records": [[name, IoU, Dice], ...], "masks": {name: packed}, "extra": {...}}``:
  a finished unit, its scores (JSON's shortest round-trip floats: read back bit for bit), the masks
  the caller keeps with it (:func:`pack_mask`) and its own fields (positions, times).

A torn last line (what a kill or a full disk leaves) is dropped and truncated away. A record of
another key or format version is set aside as ``<name>.stale``, a damaged one (a wrong checksum
before the end, a foreign header, a line of no known kind, a unit twice) as ``<name>.damaged``
(``.1``, ``.2``... when taken), each with one log line; never deleted, never reused.

Each unit is written by one ``write`` before :meth:`Journal.append` returns, so a killed process
loses no unit it recorded; a background thread then syncs the file (``fdatasync``, one for several
units when they come faster), so an OS crash loses at most the last few, which a resumed run
scores again (an inline fdatasync would cost far more: BENCHMARKS.md, "Stream at scale"). One
writer per record: a second process that opens it while the first holds it is refused.
"""

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cli import UserError, os_error
from .data import IMAGE_DIR, MASK_DIR

log = logging.getLogger(__name__)

FORMAT, VERSION = "unet_infer", 2
HEADER_START = b'{"journal":'
SUFFIX = ".journal"


class Damaged(ValueError):
    """A record that cannot be trusted (the message says where and why)."""


class Unit(NamedTuple):
    id: int
    records: list  # [{"name", "iou", "dice"}, ...]
    masks: dict  # {name: packed mask} (pack_mask)
    extra: dict  # its own fields


# ---- what a run is made from ---------------------------------------------------------------------

def run_key(model, data, options):
    """A scoring run's key: the model file, the data's images and masks (each: the resolved path and
    the digest of its ``manifests.fingerprint``) and ``options`` (what changes the scores)."""
    from .manifests import fingerprint
    parts = {"model": Path(model), "images": Path(data) / IMAGE_DIR, "masks": Path(data) / MASK_DIR}
    key = {name: [str(path.resolve()), digest(fingerprint(path))] for name, path in parts.items()}
    key["options"] = dict(options)
    return key


def digest(value):
    """The first 16 hex digits of the sha256 of ``value``'s canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# ---- lines and masks -------------------------------------------------------------------------------

def encode_line(value):
    """One line: compact ASCII JSON (no tab or newline inside), a tab, its CRC-32, a newline."""
    text = json.dumps(value, separators=(",", ":")).encode("ascii")
    return text + b"\t%08x\n" % zlib.crc32(text)


def decode_line(line):
    """The value of one line (without its newline), or None when its checksum or JSON is wrong."""
    text, tab, crc = line.rpartition(b"\t")
    if not tab or len(crc) != 8 or crc != b"%08x" % zlib.crc32(text):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def pack_mask(mask):
    """The one form a mask travels and is kept in (an actor's row, the record, the report's
    extremes): ``"<shape, x-separated>:" + base64(zlib(packbits))`` of a bool mask."""
    mask = np.asarray(mask, dtype=bool)
    packed = base64.b64encode(zlib.compress(np.packbits(mask.reshape(-1)).tobytes(), 1)).decode("ascii")
    return f"{'x'.join(map(str, mask.shape))}:{packed}"


def unpack_mask(text):
    shape, _, packed = text.partition(":")
    shape = [int(n) for n in shape.split("x")]
    bits = np.frombuffer(zlib.decompress(base64.b64decode(packed, validate=True)), np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)


def _unit(value):
    """A :class:`Unit` from a unit line's value; anything malformed is :class:`Damaged`."""
    try:
        uid, records = value["unit"], value["records"]
        if not isinstance(uid, int) or isinstance(uid, bool) or uid < 0 or not isinstance(records, list):
            raise TypeError
        records = [{"name": name, "iou": float(iou), "dice": float(dice)} for name, iou, dice in records]
        if not all(isinstance(r["name"], str) for r in records):
            raise TypeError
        masks = dict(value.get("masks", {}))
        extra = value.get("extra", {})
        if not isinstance(extra, dict) or not all(isinstance(m, str) for m in masks.values()):
            raise TypeError
    except (KeyError, TypeError, ValueError) as exc:
        raise Damaged(f"a unit line that is not ours ({type(exc).__name__})") from None
    return Unit(uid, records, masks, extra)


class Scan(NamedTuple):
    """What a record file holds: ``header`` (None: empty), ``attempts`` (their lines' count), ``units``
    (id -> :class:`Unit`, file order) and ``good`` (bytes up to the end of its last whole line)."""
    header: dict
    attempts: int
    units: dict
    good: int


def scan(data):
    """Read a record's bytes; a torn last line is left out of ``good``; damage is :class:`Damaged`."""
    lines = data.split(b"\n")
    complete, offset, values = lines[:-1], 0, []
    for number, line in enumerate(complete, 1):
        value = decode_line(line)
        if value is None:
            if number == 1:
                raise Damaged("its first line is not this program's header")
            if number < len(complete):
                raise Damaged(f"line {number} has a wrong checksum")
            break  # the last line: torn by a kill or a full disk
        values.append(value)
        offset += len(line) + 1
    if not values:
        if not HEADER_START.startswith(data[:len(HEADER_START)]):
            raise Damaged("its first line is not this program's header")
        return Scan(None, 0, {}, 0)  # empty, or a header torn before its newline
    header = values[0]
    if not isinstance(header, dict) or header.get("journal") != FORMAT or not isinstance(header.get("key"), dict):
        raise Damaged("its first line is not this program's header")
    attempts, units = 0, {}
    for value in values[1:]:
        if isinstance(value, dict) and "attempt" in value:
            attempts += 1
        elif isinstance(value, dict) and "unit" in value:
            unit = _unit(value)
            if unit.id in units:
                raise Damaged(f"unit {unit.id} is recorded twice")
            units[unit.id] = unit
        else:
            raise Damaged("a line of no known kind")
    return Scan(header, attempts, units, offset)


# ---- the journal ---------------------------------------------------------------------------------

class _Syncer(threading.Thread):
    """Syncs the record's file to the disk after each write (several writes: one sync)."""

    def __init__(self, fd):
        super().__init__(name="journal-sync", daemon=True)
        self.fd, self.wake, self.stopping, self.error = fd, threading.Event(), False, None

    def run(self):
        while not self.stopping:
            self.wake.wait()
            self.wake.clear()
            try:
                os.fdatasync(self.fd) if hasattr(os, "fdatasync") else os.fsync(self.fd)
            except OSError as exc:
                self.error = exc
                return

    def stop(self):
        self.stopping = True
        self.wake.set()
        self.join()


class Journal:
    """A run's record at ``path``, bound to ``key`` (:func:`run_key`); see the module notes. ``units``:
    the ids recorded (the units themselves only until :meth:`replay` hands them over)."""

    def __init__(self, path, key):
        self.path, self.hashes = Path(path), {part: digest(value) for part, value in sorted(key.items())}
        self.fd, self.syncer, self.started = None, None, False
        try:
            self._open()
        except OSError as exc:
            self.close()
            raise os_error(self.path, exc, "open the run's record") from None

    def _open(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise UserError(f"{self.path}: another run is writing this record (the same --result); "
                            f"wait for it to end") from None
        with open(self.fd, "rb", closefd=False) as fh:
            data = fh.read()
        try:
            found = scan(data)
        except Damaged as exc:
            log.warning("%s: damaged record (%s), not trusted; set aside as %s, starting afresh",
                        self.path, exc, self.set_aside("damaged").name)
            return
        if found.header is not None and (found.header.get("version") != VERSION
                                         or found.header.get("key") != self.hashes):
            log.info("%s: a record of another run (%s); set aside as %s, starting afresh", self.path,
                     self._differs(found.header), self.set_aside("stale").name)
            return
        if found.good < len(data):
            log.info("%s: dropped a torn last line (%d bytes)", self.path, len(data) - found.good)
            os.ftruncate(self.fd, found.good)
        self.units, self.recorded, self.size = set(found.units), found.units, found.good
        self.attempts = found.attempts + 1  # the runs that recorded units, this one included

    def _differs(self, header):
        if header.get("version") != VERSION:
            return f"record format version {header.get('version')}, this program writes {VERSION}"
        old = header["key"]
        return "another " + ", ".join(p for p in sorted(set(old) | set(self.hashes)) if old.get(p) != self.hashes.get(p))

    def replay(self):
        """The units earlier attempts recorded, in file order, handed over once."""
        units, self.recorded = self.recorded, {}
        return list(units.values())

    def set_aside(self, why):
        """Rename the record to ``<name>.<why>`` (a free ``.1``, ``.2``... when taken) and start an
        empty one (also a caller's way with a record that does not fit the run); the old one's new name."""
        self.stop_sync()
        aside = self.path.with_name(f"{self.path.name}.{why}")
        n = 0
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.{why}.{n}")
        os.rename(self.path, aside)
        os.close(self.fd)
        self.fd, self.started = None, False
        self._open()
        return aside

    def append(self, unit, records, masks=None, **extra):
        """Record a finished unit (``records``: ``[{"name", "iou", "dice"}, ...]``; ``masks``: ``{name:
        packed mask}``; ``extra``: JSON fields of the caller's). False when ``unit`` is recorded already
        (nothing written). A failed write (full disk) is undone and raised as a UserError."""
        if unit in self.units:
            return False
        if self.syncer is not None and self.syncer.error is not None:
            raise os_error(self.path, self.syncer.error, "write the run's record") from None
        lines = []
        if self.size == 0:
            lines.append(encode_line({"journal": FORMAT, "version": VERSION, "key": self.hashes}))
        if not self.started:
            lines.append(encode_line({"attempt": self.attempts, "pid": os.getpid(),
                                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        value = {"unit": int(unit), "records": [[r["name"], float(r["iou"]), float(r["dice"])] for r in records],
                 "masks": dict(masks or {}), "extra": extra}
        lines.append(encode_line(value))
        self._write(b"".join(lines))
        self.started = True
        self.units.add(unit)
        return True

    def _write(self, data):
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)  # no torn line before the next one
            raise os_error(self.path, exc, "write the run's record") from None
        if self.size == 0:
            _sync_folder(self.path.parent)
        self.size += len(data)
        if self.syncer is None:
            self.syncer = _Syncer(self.fd)
            self.syncer.start()
        self.syncer.wake.set()

    def stop_sync(self):
        """Wait for the last sync; its error, if any, is raised."""
        syncer, self.syncer = self.syncer, None
        if syncer is not None:
            syncer.stop()
            if syncer.error is not None:
                raise os_error(self.path, syncer.error, "write the run's record") from None

    def close(self):
        """Sync and close; a record still empty is removed (it holds nothing)."""
        if self.fd is None:
            return
        try:
            self.stop_sync()
            if os.fstat(self.fd).st_size == 0:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None

    def remove(self):
        """The run is complete and its results written: the record goes."""
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sync_folder(folder):
    """Make a new file's name durable (its folder's entry), where the folder can be synced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def beside(result):
    """A run's record: ``<result stem>.journal`` beside its result text file."""
    path = Path(result).with_suffix(SUFFIX)
    if path == Path(result):
        raise UserError(f"{result}: the result text file must not end in {SUFFIX} (the run's record takes that name)")
    return path

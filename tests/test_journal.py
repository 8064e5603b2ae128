"""The run's record (unet_infer/journal.py): append and reopen, exact floats, torn tails, damage,
keys, attempts, one writer, a full disk."""

import errno
import json
import logging
import struct
import zlib

import numpy as np
import pytest

from unet_infer import journal as journal_module
from unet_infer.cli import UserError
from unet_infer.journal import Journal, beside, decode_line, encode_line, pack_mask, run_key, scan, unpack_mask

KEY = {"model": ["/m.onnx", [10, 1]], "options": {"batchsize": 2}}


def records(unit, n=2, rng=None):
    rng = rng or np.random.default_rng(unit)
    return [{"name": f"img{unit}_{slot}", "iou": float(rng.random()), "dice": float(rng.random())} for slot in range(n)]


def fill(path, units, key=KEY):
    with Journal(path, key) as journal:
        for unit in units:
            assert journal.append(unit, records(unit), span=[unit * 2, unit * 2 + 2])
    return path


def test_append_and_reopen(tmp_path):
    path = tmp_path / "r.journal"
    mask = np.random.default_rng(0).random((5, 7)) > 0.5
    with Journal(path, KEY) as journal:
        assert journal.units == set() and journal.attempts == 1
        assert journal.append(0, records(0), {"img0_1": pack_mask(mask)}, span=[0, 2], ms=[1.5, 0.25, 0.125])
        assert journal.append(3, records(3))  # any order (the cluster's batches)
        assert not journal.append(0, records(9))  # recorded already: nothing written
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4 and [decode_line(line) is not None for line in lines] == [True] * 4
    assert json.loads(lines[0].rpartition(b"\t")[0])["journal"] == "unet_infer"
    with Journal(path, KEY) as journal:
        assert journal.units == {0, 3} and journal.attempts == 2
        unit, other = journal.replay()  # handed over once, in file order
        assert journal.replay() == [] and journal.units == {0, 3}
        assert unit.records == records(0) and unit.extra == {"span": [0, 2], "ms": [1.5, 0.25, 0.125]}
        assert set(unit.masks) == {"img0_1"} and np.array_equal(unpack_mask(unit.masks["img0_1"]), mask)
        assert unpack_mask(unit.masks["img0_1"]).dtype == bool and other.id == 3 and other.masks == {}
        journal.append(1, records(1))
    found = scan(path.read_bytes())
    assert found.attempts == 2 and list(found.units) == [0, 3, 1]
    with Journal(path, KEY) as journal:  # an attempt that records nothing writes nothing
        assert journal.attempts == 3
    assert scan(path.read_bytes()).attempts == 2


def test_floats_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    values = [1 / 3, 0.1, 1.0, 0.0, 5e-324, 2.2250738585072014e-308, np.nextafter(1.0, 0.0), 0.9999999999999999]
    values += [float(v) for v in rng.random(200)] + [float(np.float32(v)) for v in rng.random(50)]
    recs = [{"name": f"n{i}", "iou": v, "dice": values[-1 - i]} for i, v in enumerate(values)]
    with Journal(tmp_path / "r.journal", KEY) as journal:
        journal.append(0, recs)
    got = scan((tmp_path / "r.journal").read_bytes()).units[0].records
    bits = lambda rs: [struct.pack("<dd", r["iou"], r["dice"]) for r in rs]  # noqa: E731
    assert bits(got) == bits(recs) and [r["name"] for r in got] == [r["name"] for r in recs]


@pytest.mark.parametrize("tail", [b"partial", "line", b"garbage\tdeadbeef\n"])
def test_a_torn_last_line_is_dropped_and_truncated(tmp_path, caplog, tail):
    path = fill(tmp_path / "r.journal", [0, 1, 2])
    good = path.read_bytes()
    if tail == "line":  # a unit's line cut short by a kill
        tail = encode_line({"unit": 3, "records": [], "masks": {}, "extra": {}})[:-7]
    path.write_bytes(good + tail)
    caplog.set_level(logging.INFO)
    with Journal(path, KEY) as journal:
        assert sorted(journal.units) == [0, 1, 2]
        assert path.read_bytes() == good
        journal.append(3, records(3))
    assert "dropped a torn last line" in caplog.text
    assert list(scan(path.read_bytes()).units) == [0, 1, 2, 3] and not list(tmp_path.glob("r.journal.*"))


def test_a_torn_first_write_is_an_empty_record(tmp_path):
    path = tmp_path / "r.journal"
    path.write_bytes(encode_line({"journal": "unet_infer", "version": 1, "key": {}})[:20])
    with Journal(path, KEY) as journal:
        assert journal.units == set() and journal.attempts == 1
    assert not path.exists()  # still empty at the end: nothing to keep


def test_a_damaged_middle_is_set_aside_never_trusted(tmp_path, caplog):
    path = fill(tmp_path / "r.journal", [0, 1, 2, 3])
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"img", b"IMG", 1)  # the checksum no longer matches
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    with Journal(path, KEY) as journal:
        assert journal.units == set() and journal.attempts == 1
        journal.append(0, records(0))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].message
    assert "line 4 has a wrong checksum" in warnings[0].message and "r.journal.damaged" in warnings[0].message
    assert (tmp_path / "r.journal.damaged").read_bytes() == damaged  # renamed, not deleted
    assert list(scan(path.read_bytes()).units) == [0]
    path.write_bytes(damaged)
    Journal(path, KEY).close()
    assert (tmp_path / "r.journal.damaged.1").read_bytes() == damaged


@pytest.mark.parametrize("content, why", [
    (b"name IoU Dice\nimg 0.9 0.9\n", "first line is not this program's header"),
    (b"hello", "first line is not this program's header"),
    ("edited", "first line is not this program's header"),
    (encode_line({"journal": "another", "key": {}}) + encode_line({"attempt": 1}), "not this program's header"),
    ("kind", "a line of no known kind"),
    ("twice", "unit 0 is recorded twice"),
    ("records", "a unit line that is not ours"),
])
def test_foreign_and_edited_records_are_set_aside(tmp_path, caplog, content, why):
    path = fill(tmp_path / "r.journal", [0, 1])
    lines = path.read_bytes().splitlines(keepends=True)
    if content == "edited":  # a hand-edited header: valid JSON, its checksum no longer matches
        content = b"".join([lines[0].replace(b'"version":2', b'"version": 2')] + lines[1:])
    elif content in ("kind", "twice", "records"):
        extra = {"kind": {"something": 1}, "twice": {"unit": 0, "records": [], "masks": {}, "extra": {}},
                 "records": {"unit": 2, "records": [["a", 0.5]], "masks": {}, "extra": {}}}[content]
        content = b"".join(lines) + encode_line(extra) + encode_line({"unit": 5, "records": []})
    path.write_bytes(content)
    with Journal(path, KEY) as journal:
        assert journal.units == set()
    assert why in caplog.text and "damaged record" in caplog.text
    assert (tmp_path / "r.journal.damaged").read_bytes() == content
    assert not path.exists()


def test_another_key_or_version_is_set_aside_as_stale(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = fill(tmp_path / "r.journal", [0, 1])
    old = path.read_bytes()
    other = dict(KEY, options={"batchsize": 4})
    with Journal(path, other) as journal:
        assert journal.units == set() and journal.attempts == 1
        journal.append(0, records(0))
    assert "a record of another run (another options)" in caplog.text and "r.journal.stale" in caplog.text
    assert (tmp_path / "r.journal.stale").read_bytes() == old and list(scan(path.read_bytes()).units) == [0]
    header = json.loads(path.read_bytes().splitlines()[0].rpartition(b"\t")[0])
    lines = path.read_bytes().splitlines(keepends=True)
    header["version"] = 99
    path.write_bytes(encode_line(header) + b"".join(lines[1:]))
    caplog.clear()
    Journal(path, other).close()
    assert "record format version 99" in caplog.text and (tmp_path / "r.journal.stale.1").exists()


def test_run_key_follows_the_files(tmp_path):
    model, data = tmp_path / "m.onnx", tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train_masks").mkdir()
    model.write_bytes(b"model")
    (data / "train" / "a.jpg").write_bytes(b"x")
    key = run_key(model, data, {"size": 32})
    assert run_key(model, data, {"size": 32}) == key
    assert run_key(model, data, {"size": 64}) != key
    (data / "train" / "b.jpg").write_bytes(b"y")
    assert run_key(model, data, {"size": 32}) != key
    path = fill(tmp_path / "r.journal", [0], key=key)
    with Journal(path, run_key(model, data, {"size": 32})) as journal:
        assert journal.units == set()  # images changed: not reused
    assert (tmp_path / "r.journal.stale").exists()


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "r.journal"
    with Journal(path, KEY) as journal:
        journal.append(0, records(0))
        with pytest.raises(UserError, match="another run is writing this record"):
            Journal(path, KEY)
    assert list(scan(path.read_bytes()).units) == [0]


def test_a_full_disk_leaves_no_torn_line(tmp_path, monkeypatch):
    path = fill(tmp_path / "r.journal", [0])
    good = path.read_bytes()
    real_write = journal_module.os.write

    def half_then_full(fd, data):
        if len(data) > 40:
            real_write(fd, bytes(data[:40]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with Journal(path, KEY) as journal:
        monkeypatch.setattr(journal_module.os, "write", half_then_full)
        with pytest.raises(UserError, match="r.journal"):
            journal.append(1, records(1))
        monkeypatch.undo()
        assert path.read_bytes() == good and 1 not in journal.units
    with Journal(path, KEY) as journal:
        assert sorted(journal.units) == [0]


def test_remove_and_the_record_name(tmp_path):
    path = fill(tmp_path / "r.journal", [0])
    with Journal(path, KEY) as journal:
        journal.remove()
    assert not path.exists()
    assert beside("work/result_bs8.txt").as_posix() == "work/result_bs8.journal"
    with pytest.raises(UserError, match="must not end in .journal"):
        beside("work/r.journal")


def test_lines_carry_their_checksum():
    line = encode_line({"a": [1, 0.5, "x\ty\n"]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.count(b"\t") == 1
    text, _, crc = line[:-1].rpartition(b"\t")
    assert int(crc, 16) == zlib.crc32(text)
    assert decode_line(line[:-1]) == {"a": [1, 0.5, "x\ty\n"]}
    assert decode_line(line[:-1].replace(b"0.5", b"0.6")) is None

"""The stages' declarations (``manifests.STAGES``): one record, set of paths and options per stage,
the same whether the driver asks through ``python3 -m unet_infer.stages`` or the speed tables
build the model in Python; options the package decides (the INT8 recipe's weight_bits) are
decided where the manifest is made; a record of another form re-runs the stage, never crashes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unet_infer import backends, manifests, stages
from unet_infer.cli import UserError, run_cli
from unet_infer.quantize import recipe_options
from unet_infer.workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "scripts" / "run_all.sh"


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "unet_infer.stages", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def values_args(values):
    return [a for key, value in values.items() for a in ("--value", f"{key}={value}")]


@pytest.fixture
def work(tmp_path):
    w = Workdir(tmp_path / "work")
    w.root.mkdir()
    w.simplified.write_bytes(b"onnx")
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "a.bin").write_bytes(b"x" * 12)
    return w


def test_every_declared_path_has_a_rule_and_every_record_names_its_values():
    for name, stage in manifests.STAGES.items():
        for path in (*stage.inputs, *stage.outputs):
            assert path in manifests.PATHS, (name, path)
        assert stage.outputs, name  # every stage makes something, recorded so that its loss re-runs it
    with pytest.raises(UserError, match="needs the value bs="):
        manifests.made_from("score", "/w", {"size": 8})
    with pytest.raises(UserError, match="needs the value calib="):
        manifests.made_from("quantize", "/w", {"backend": "onnxruntime", "size": 8})
    with pytest.raises(UserError, match="not a stage"):
        manifests.made_from("quantise", "/w", {})


@pytest.mark.parametrize("flags,bits", [("avx2 fma", "7"), ("avx2 avx512_vnni", "8")])
def test_the_driver_and_the_speed_tables_make_one_manifest_with_weight_bits_decided_here(work, tmp_path, play_cpu,
                                                                                        flags, bits):
    play_cpu(flags)
    calib = tmp_path / "calib"
    made = manifests.made_from("quantize", work.root, {"backend": "onnxruntime", "size": 64, "calib": calib})
    assert made.record == "quantize_onnxruntime"
    assert made.options == {"size": "64", "weight_bits": bits} == {"size": "64", **{
        k: str(v) for k, v in recipe_options().items()}}
    assert made.inputs == (work.simplified, calib) and made.outputs == (work.quantized(backends.get_backend(
        "onnxruntime")),)
    made.outputs[0].write_bytes(b"int8")
    # the driver gives every value it has (the same for every stage) and never weight_bits
    driver = {"backend": "onnxruntime", "precision": "int8", "weights": tmp_path / "w.pth", "data": tmp_path,
              "size": 64, "chip": "", "device": 0, "calib": calib}
    done = cli("done", "quantize", "--work", work.root, *values_args(driver))
    assert done.returncode == 0, done.stderr
    assert json.loads((work.stages / "quantize_onnxruntime.json").read_text()) == json.loads(
        json.dumps(made.manifest()))
    assert made.complete(work.root)  # what the speed tables ask, in Python
    check = cli("check", "quantize", "--work", work.root, *values_args(driver))
    assert (check.returncode, check.stdout) == (0, "quantize_onnxruntime\n"), check.stderr
    other = "avx2 fma" if bits == "8" else "avx2 avx512_vnni"  # another machine: another recipe, re-quantised
    again = cli("check", "quantize", "--work", work.root, *values_args(driver),
                env={backends.TEST_CPU_FLAGS_ENV: other})
    assert (again.returncode, again.stdout) == (3, "quantize_onnxruntime\n"), again.stderr  # 3: other inputs
    assert not (work.stages / "quantize_onnxruntime.json").exists()  # dropped: it runs again


def test_compile_is_one_record_per_backend_precision_and_batch_size(work, tmp_path):
    values = {"backend": "openvino", "precision": "bf16", "bs": 8, "size": 64, "weights": tmp_path / "w.pth"}
    made = manifests.made_from("compile", work.root, values)
    assert made.record == "compile_openvino_bf16_bs8"
    assert made.inputs == (work.simplified,) and made.outputs == (work.root / "UNet_bs8.xml",)
    assert made.options == {"size": "64", "chip": ""}  # not given: the command's default, as the driver records it
    torch_perf = manifests.made_from("perf", work.root, {**values, "backend": "torch", "precision": "fp32"})
    assert torch_perf.inputs == (tmp_path / "w.pth",)  # a backend that runs the checkpoint: the .pth is the model


def test_a_record_of_another_form_reruns_the_stage(work):
    values = {"size": 64}
    made = manifests.made_from("simplify", work.root, values)
    work.onnx.write_bytes(b"raw")
    made.record_done(work.root)
    assert made.complete(work.root)
    path = work.stages / "simplify.json"
    old = json.loads(path.read_text())
    for other in ({**old, "version": 0}, {**old, "options": {"size": 64, "n_calib": 16}}, "not json {"):
        path.write_text(other if isinstance(other, str) else json.dumps(other))
        check = cli("check", "simplify", "--work", work.root, "--value", "size=64")
        assert (check.returncode, check.stdout, check.stderr) == (3, "simplify\n", "")
        assert not path.exists()


def test_the_drivers_lock_and_last_result_are_the_work_folders_names(work):
    proc = subprocess.run([sys.executable, "-m", "unet_infer.driver", "options", f"workdir={work.root}"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0 and f"\nLOCK={work.lock}\n" in proc.stdout and work.lock.name == ".lock", proc
    for bs, text in ((1, "one"), (8, "eight")):
        work.result_txt(bs).write_text(f"{text}.txt")
        work.result_json(bs).write_text(f"{text}.json")
    done = cli("last-result", "--work", work.root, "--bs", "1,8")
    assert done.returncode == 0, done.stderr
    assert (work.result_txt().read_text(), work.result_json().read_text()) == ("eight.txt", "eight.json")
    work.result_json(8).unlink()
    failed = cli("last-result", "--work", work.root, "--bs", "8")
    assert failed.returncode == 2 and str(work.result_json(8)) in failed.stderr, failed.stderr
    assert not [p for p in work.root.iterdir() if p.name.endswith(".tmp")]


def test_the_driver_spells_no_stage_option_and_no_work_folder_name():
    """What a stage is made from is the package's (its declaration); the work folder's names too."""
    code = [line.split("  # ")[0] for line in DRIVER.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")]
    body = "\n".join(code)
    for word in ("--option", "--input \"", "weight_bits", "WEIGHT_BITS", ".lock", "result.txt", "result.json",
                 "compile_", "quantize_", "\"infer_bs", "\"score_bs", "\"perf_bs", "\"stream_bs", "\"cluster_bs",
                 "\"bs$bs\""):
        assert word not in body, word


def test_another_precision_or_backend_gets_its_own_names_and_the_first_keeps_the_plain_ones(tmp_path):
    """fp32 then INT8 (or another backend) in one work folder: no path or record of one run is the
    other's, so neither replaces the other; the first run of the folder keeps today's names."""
    from unet_infer.stages import plan
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    first = plan(tmp_path, weights, "onnxruntime", None, [1, 8])
    assert (first["RUN_TAG"], first["RUN_NAME_8"], first["PERF_NAME_8"], first["RESULT_TXT_8"].name,
            first["OUTPUTS_1"].name, first["SUMMARY_8"].name) == ("", "bs8", "perf_bs8", "result_bs8.txt", "bs1",
                                                                 "bs8_summary.json")
    assert plan(tmp_path, weights, "torch", "bf16", [8])["RUN_TAG"] == ""  # nothing run yet: the plain names

    def finish(values, backend, precision):  # what the driver records once a run's inference is done
        common = {"backend": backend, "precision": precision, "weights": weights, "data": tmp_path, "size": 64,
                  "run": values["RUN_TAG"]}
        for bs in (1, 8):
            manifests.made_from("infer", tmp_path, {**common, "bs": bs}).record_done(tmp_path)
        records = {manifests.made_from(stage, tmp_path, {**common, "bs": bs}).record
                   for stage in ("infer", "score", "stream", "cluster", "perf") for bs in (1, 8)}
        paths = {values[f"{name}_{bs}"] for name in ("OUTPUTS", "SUMMARY", "LOG", "PERF_SUMMARY", "RESULT_TXT")
                 for bs in (1, 8)}
        return records, paths | {Workdir(tmp_path, values["RUN_TAG"]).result_txt()}

    seen = {("onnxruntime", "fp32"): finish(first, "onnxruntime", "fp32")}
    for backend, precision in (("onnxruntime", "int8"), ("torch", "fp32")):
        values = plan(tmp_path, weights, backend, precision, [1, 8])
        assert values["RUN_TAG"] == f"{backend}_{precision}"
        records, paths = seen[backend, precision] = finish(values, backend, precision)
        for other, (their_records, their_paths) in seen.items():
            assert other == (backend, precision) or not (records & their_records or paths & their_paths), other
    assert "infer_bs8" in seen["onnxruntime", "fp32"][0]
    assert "infer_onnxruntime_int8_bs8" in seen["onnxruntime", "int8"][0]
    assert plan(tmp_path, weights, "onnxruntime", "fp32", [8])["RUN_TAG"] == ""  # each keeps its own names
    assert plan(tmp_path, weights, "onnxruntime", "int8", [8])["RESULT_TXT_8"].name == "result_onnxruntime_int8_bs8.txt"
    for path in Workdir(tmp_path).stages.glob("infer_bs*.json"):
        path.unlink()  # the plain names free again: INT8 keeps the names its results have
    assert plan(tmp_path, weights, "onnxruntime", "int8", [8])["RUN_TAG"] == "onnxruntime_int8"
    assert plan(tmp_path, weights, "torch", "bf16", [8])["RUN_TAG"] == ""


def test_a_replaced_run_is_said_to_be_outdated_or_unfinished_never_guessed(work):
    """`check` tells the two apart (1: no record, 3: a record of other inputs); `clear-run` says which."""
    for flags, why in (([], "left unfinished by a run that stopped before its end"),
                       (["--changed"], "made from other inputs"), (["--retime"], "timed again (retime=1)")):
        (work.results / "bs8").mkdir(parents=True)
        (work.results / "bs8" / "a.bin").write_bytes(b"x")
        proc = cli("clear-run", "--work", work.root, "--name", "bs8", *flags)
        assert proc.returncode == 0 and why in proc.stdout and "interrupted" not in proc.stdout, proc
        assert not (work.results / "bs8").exists()
    values = ["--value", "size=64"]
    assert cli("check", "simplify", "--work", work.root, *values).returncode == 1  # never run
    manifests.made_from("simplify", work.root, {"size": 64}).record_done(work.root)
    assert cli("check", "simplify", "--work", work.root, *values).returncode == 0
    assert cli("check", "simplify", "--work", work.root, "--value", "size=32").returncode == 3
    assert cli("check", "simplify", "--work", work.root, *values).returncode == 1  # its record was dropped


@pytest.mark.parametrize("args,words", [
    (["frobnicate"], "unknown option 'frobnicate' (options are key=value; see scripts/run_all.sh --help)"),
    (["bs=8,0"], "bs must be a batch size or a comma list of them, got '8,0'"), (["workdir="], "workdir= needs a folder"),
    (["size=15"], "size=15: the UNet needs at least 16 x 16"), (["threads=0"], "threads must be a positive whole"),
    (["gpus_per_actor=1"], "go with cluster=ray"), (["cluster=ray", "labels=none"], "cluster=ray scores as it goes"),
    (["stream=1", "unreadable=skip"], "unreadable=skip goes with the file flow")])
def test_the_driver_checks_each_option_once_in_one_line(args, words):
    from unet_infer.driver import check_options
    with pytest.raises(UserError) as error:
        check_options(args)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_every_option_of_the_drivers_help_is_checked_and_the_driver_checks_none():
    from unet_infer.driver import OPTIONS, USAGE, check_options
    helped = re.findall(r"^  ([a-z_]+)=", USAGE[:USAGE.index("examples:")], re.MULTILINE)
    assert sorted(helped) == sorted(OPTIONS)
    assert check_options(["cluster=ray"])["flow"] == "cluster" and check_options([])["flow"] == "files"
    text = DRIVER.read_text(encoding="utf-8")
    for check in ("=~", "must be", "(( SIZE", "-d \"$DATA"):
        assert check not in text, check


def test_preflight_names_the_first_missing_mask_and_counts_the_others(carvana, capsys):
    for stem in carvana.stems[:2]:
        carvana.mask(stem).unlink()
    assert run_cli(stages.main, ["preflight", "--data", str(carvana.train.parent)]) == 2
    first = carvana.stems[0]
    assert capsys.readouterr().err == (
        f"error: {carvana.mask(first)}: mask not found (nor {first}_mask.png; the label of "
        f"{carvana.train / first}.jpg); 1 more of the {len(carvana.stems)} images have no mask; add the masks, "
        f"or pass labels=none to the driver to run without scoring\n")
    assert run_cli(stages.main, ["preflight", "--data", str(carvana.train.parent), "--no-labels"]) == 0
    assert capsys.readouterr().out == f"{len(carvana.stems)} images in {carvana.train}\n"

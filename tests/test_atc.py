"""scripts/atc.sh against stand-in ``atc`` and ``npu-smi`` commands that record what they were given."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "atc.sh"
NPU_SMI = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 23.0.rc3                 Version: 23.0.rc3                                             |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)                        |
+===========================+===============+====================================================+
| 0     310P3               | OK            | NA          45                0     / 0            |
| 0                         | 0000:82:00.0  | 0           1419 / 21527                            |
+===========================+===============+====================================================+
"""
ATC = """#!/bin/bash
printf '%s\\n' "$@" > atc_args.txt
for arg in "$@"; do
    case $arg in --output=*) [[ -n ${NO_OM:-} ]] || touch "${arg#--output=}.om" ;; esac
done
echo "ATC run success"
"""


def write_tool(folder, name, text):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "UNet_dynamic_sim.onnx").write_bytes(b"onnx")
    write_tool(tmp_path / "bin", "npu-smi", f"#!/bin/bash\ncat <<'TXT'\n{NPU_SMI}TXT\n")
    return tmp_path


def atc_sh(work, *args, with_atc=True, **env):
    if with_atc:
        write_tool(work / "bin", "atc", ATC)
    env = {"PATH": f"{work / 'bin'}:/usr/bin:/bin", "ASCEND_SET_ENV": str(work / "no_set_env.sh"), **env}
    return subprocess.run([str(SCRIPT), *args], cwd=work, env=env, capture_output=True, text=True)


def recorded(work):
    return (work / "atc_args.txt").read_text().splitlines()


def guide_line(bs, chip="310P3", output=None, size=572):
    return ["--model=UNet_dynamic_sim.onnx", "--framework=5", f"--output={output or f'UNet_bs{bs}'}",
            "--input_format=NCHW", f"--input_shape=actual_input_1:{bs},3,{size},{size}", "--log=info",
            f"--soc_version=Ascend{chip}"]


def test_guide_command_with_the_chip_from_npu_smi(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=8")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(8)
    assert (work / "UNet_bs8.om").is_file()


def test_chip_output_and_size_given_in_every_form(work):
    os.remove(work / "bin" / "npu-smi")  # not needed when --chip is given
    (work / "om").mkdir()
    proc = atc_sh(work, "model=UNet_dynamic_sim.onnx", "--bs", "4", "--chip=310B1", "output=om/u4", "--size=256")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(4, "310B1", "om/u4", 256)
    assert (work / "om" / "u4.om").is_file()


def test_missing_om_is_an_error(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=1", NO_OM="1")
    assert proc.returncode != 0 and "UNet_bs1.om is missing" in proc.stderr


def test_without_atc_fails_with_a_clear_message(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=8", with_atc=False)
    assert proc.returncode != 0
    assert "atc not found" in proc.stderr and "no_set_env.sh" in proc.stderr


def test_set_env_is_sourced_when_atc_is_not_on_path(work):
    write_tool(work / "cann", "atc", ATC)
    (work / "set_env.sh").write_text(f'export PATH="{work / "cann"}:$PATH:$UNSET_IN_SET_ENV"\n')
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=16", with_atc=False,
                  ASCEND_SET_ENV=str(work / "set_env.sh"))
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(16)


def test_usage_errors_and_help(work):
    assert "--framework=5" in atc_sh(work, "--help").stdout
    assert "--bs must be a positive integer" in atc_sh(work, "--model=UNet_dynamic_sim.onnx").stderr
    assert "model not found" in atc_sh(work, "--model=none.onnx", "--bs=1").stderr
    assert "unknown option" in atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=1", "--oops=1").stderr


def test_unreadable_npu_smi_asks_for_the_chip(work):
    write_tool(work / "bin", "npu-smi", "#!/bin/bash\necho 'dcmi module initialize failed'\n")
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=8")
    assert proc.returncode != 0 and "could not read the chip name" in proc.stderr and "--chip" in proc.stderr


# The guide's Stage 3 line, verbatim but for `atc` typed as our wrapper (the README's `atc` -> `scripts/atc.sh`).
GUIDE = ("atc --model=UNet_dynamic_sim.onnx --framework=5 --output=UNet_bs${batch_size} --input_format=NCHW "
         "--input_shape='actual_input_1:${batch_size},3,572,572' --log=info --soc_version=Ascend${chip_name}")


def typed(work, line, with_atc=True, setup=""):
    """Run ``line`` (with ``atc`` replaced by the wrapper) in bash, as a user would type it after ``setup``."""
    if with_atc:
        write_tool(work / "bin", "atc", ATC)
    env = {"PATH": f"{work / 'bin'}:/usr/bin:/bin", "ASCEND_SET_ENV": str(work / "no_set_env.sh")}
    line = line.replace("atc ", f"'{SCRIPT}' ", 1)
    return subprocess.run(["bash", "-c", f"{setup}\n{line}"], cwd=work, env=env, capture_output=True, text=True)


def test_the_guides_line_with_numbers_written_in(work):
    os.remove(work / "bin" / "npu-smi")  # --soc_version names the chip
    proc = typed(work, GUIDE.replace("${batch_size}", "8").replace("${chip_name}", "310P3"))
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(8)
    assert proc.stdout.splitlines()[-1] == "wrote UNet_bs8.om" and (work / "UNet_bs8.om").is_file()


def test_the_guides_line_in_double_quotes_after_setting_the_variables(work):
    proc = typed(work, GUIDE.replace("'", '"'), setup="batch_size=16 chip_name=310B1")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(16, "310B1")


def test_the_guides_single_quotes_leave_batch_size_unexpanded(work):
    proc = typed(work, GUIDE, setup="batch_size=8 chip_name=310P3")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: --input_shape='actual_input_1:${batch_size},3,572,572': ${batch_size} was not expanded (the guide's "
        "single quotes keep the shell from expanding it); set batch_size=8 first and use double quotes, or write "
        "the number"]
    assert not (work / "atc_args.txt").exists()


@pytest.mark.parametrize("arg,shown", [
    ("--output=UNet_bs${batch_size}", "--output='UNet_bs${batch_size}': ${batch_size} was not expanded"),
    ("--soc_version=Ascend${chip_name}", "--soc_version='Ascend${chip_name}': ${chip_name} was not expanded"),
    ("--precision_mode=$mode", "--precision_mode='$mode': $mode was not expanded"),
])
def test_any_unexpanded_variable_is_named(work, arg, shown):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=8", arg)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert shown in proc.stderr and "double quotes" in proc.stderr


def test_empty_variables_are_caught(work):
    proc = typed(work, GUIDE.replace("'", '"'))  # neither batch_size nor chip_name set
    assert proc.returncode == 2 and "the batch size is empty (was $batch_size set?)" in proc.stderr
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=8", "--soc_version=Ascend")
    assert proc.returncode == 2 and "names no chip (was $chip_name set?" in proc.stderr
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--input_shape=actual_input_1:8,3,572,572", "--output=UNet_bs")
    assert proc.returncode == 2 and "has no batch size" in proc.stderr


def test_other_atc_flags_pass_through_after_the_guides(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--input_shape=actual_input_1:4,3,572,572",
                  "--precision_mode=allow_fp32_to_fp16", "op_select_implmode=high_precision",
                  "--fusion_switch_file", "fusion off.cfg", "--soc_version=Ascend310P3")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(4) + ["--precision_mode=allow_fp32_to_fp16",
                                              "--op_select_implmode=high_precision",
                                              "--fusion_switch_file=fusion off.cfg"]


def test_log_level_is_atcs(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=2", "--log=error")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == [a.replace("--log=info", "--log=error") for a in guide_line(2)]


def test_soc_version_names_the_chip(work):
    os.remove(work / "bin" / "npu-smi")
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=1", "--soc_version=Ascend310B1")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(1, "310B1")
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--bs=1", "--soc_version=Ascend310B1", "--chip=310B1")
    assert proc.returncode == 0, proc.stderr  # the same chip twice is fine


def test_input_shape_gives_the_batch_size_and_size(work):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", "--input_shape", "actual_input_1:2,3,256,256", "--bs=2")
    assert proc.returncode == 0, proc.stderr
    assert recorded(work) == guide_line(2, size=256)


@pytest.mark.parametrize("args,message", [
    (["--framework=3"], "--framework=3: only 5 (ONNX) is supported here"),
    (["--framework", "0"], "--framework=0: only 5 (ONNX) is supported here"),
    (["--input_format=NHWC"], "--input_format=NHWC: only NCHW is supported here"),
    (["--log=verbose"], "--log=verbose: expected debug, info, warning, error or null"),
    (["--bs=4", "--input_shape=actual_input_1:8,3,572,572"], "--bs=4 and --input_shape='actual_input_1:8,3,572,572' "
                                                            "disagree on the batch size"),
    (["--size=512", "--input_shape=actual_input_1:8,3,572,572"], "disagree on the size"),
    (["--bs=8", "--chip=310B1", "--soc_version=Ascend310P3"], "--chip=310B1 and --soc_version=Ascend310P3 disagree"),
    (["--bs=8", "--soc_version=310P3"], "--soc_version=310P3: expected Ascend<chip>, e.g. Ascend310P3"),
    (["--input_shape=input:8,3,572,572"], "the input is named 'input', expected actual_input_1"),
    (["--input_shape=actual_input_1:8,3,572,388"], "height and width must be the same positive integer"),
    (["--input_shape=actual_input_1:8,1,572,572"], "the model takes 3 channels"),
    (["--input_shape=actual_input_1:-1,3,572,572"], "the batch size must be a positive integer, got '-1'"),
    (["--input_shape=actual_input_1:8,3,572"], "expected actual_input_1:<bs>,3,<size>,<size>"),
])
def test_atc_flag_errors(work, args, message):
    proc = atc_sh(work, "--model=UNet_dynamic_sim.onnx", *args)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert message in proc.stderr
    assert not (work / "atc_args.txt").exists()


def test_without_atc_the_guides_line_gets_one_line(work):
    proc = typed(work, GUIDE.replace("${batch_size}", "8").replace("${chip_name}", "310P3"), with_atc=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: atc not found")


def test_help_documents_both_forms(work):
    text = atc_sh(work, "--help").stdout
    assert GUIDE.replace("atc ", "scripts/atc.sh ", 1) in text
    assert "scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8" in text
    assert "(default: 572)" in text and "(default: info)" in text and "--precision_mode" in text

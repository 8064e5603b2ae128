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

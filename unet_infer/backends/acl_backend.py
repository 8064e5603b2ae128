"""Ascend .om models: compiled by atc (``scripts/atc.sh``, the guide's command line) and run by
Huawei's ais_bench (``python3 -m ais_bench``), which needs CANN and an NPU. Neither is on PyPI:
this backend is found, never installed; the other backends need neither.

The precision is atc's default for inference, fp16 (``--precision_mode``).
"""

import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ..cli import UserError
from ..formats import DEFAULT_SIZE
from .base import ExternalBackend, Option

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ATC_SCRIPT = ROOT / "scripts" / "atc.sh"
SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
INSTALL = ("on a machine with an Ascend NPU and CANN, run `source /usr/local/Ascend/ascend-toolkit/set_env.sh`, "
           "then install the ais_bench tool (its aclruntime and ais_bench wheels) as its readme says: "
           "https://gitee.com/ascend/tools/tree/master/ais-bench_workload/tool/ais_bench")
SUBSTITUTES = ("on this machine run the same stages with backend=onnxruntime (an .onnx model: "
               "python3 -m unet_infer.compile) or backend=torch (the .pth itself)")


def has_ais_bench():
    return importlib.util.find_spec("ais_bench") is not None


class AclBackend(ExternalBackend):

    name = "acl"
    precisions = ("fp16",)
    model_suffixes = (".om",)
    program = "Huawei's ais_bench (python3 -m ais_bench)"
    accelerator = "Ascend NPU"
    compile_options = (
        Option("chip", "acl: the Ascend SoC atc compiles for, e.g. 310P3 (without it: read from npu-smi info)",
               type=str),
    )

    @classmethod
    def available(cls):
        has_atc = shutil.which("atc") is not None or Path(os.environ.get("ASCEND_SET_ENV", SET_ENV)).is_file()
        missing = [what for what, ok in (("atc (CANN)", has_atc), ("ais_bench", has_ais_bench())) if not ok]
        if missing:
            return False, (f"the acl backend needs {' and '.join(missing)}, not found here; {INSTALL}; "
                           f"{SUBSTITUTES}")
        return True, ""

    @classmethod
    def compile(cls, src, dst, batchsize, threads=None, size=DEFAULT_SIZE, check=True, chip=None):
        """``scripts/atc.sh`` (atc appends .om to its --output); ``chip`` (e.g. 310P3), else ``npu-smi info``'s."""
        dst = Path(dst)
        if dst.suffix != ".om":
            raise UserError(f"{dst}: atc writes .om files; name the output <name>.om")
        cmd = ["bash", str(ATC_SCRIPT), f"--model={src}", f"--bs={batchsize}", f"--output={dst.with_suffix('')}",
               f"--size={size}"]
        if chip:
            cmd.append(f"--chip={chip}")
        status = subprocess.call(cmd)
        if status:
            raise UserError(f"atc failed for batch size {batchsize} (exit status {status}, see above)")
        return dst

    @classmethod
    def run_external(cls, argv):
        if not has_ais_bench():
            raise UserError(f".om models run on Huawei's ais_bench, which is not installed here; {INSTALL}; "
                            f"{SUBSTITUTES}")
        cmd = [sys.executable, "-m", "ais_bench", *argv]
        log.info("the .om model runs on ais_bench: %s", shlex.join(["python3", *cmd[1:]]))
        return subprocess.call(cmd)


BACKEND = AclBackend

"""Ascend .om models: handed over to Huawei's ais_bench (``python3 -m ais_bench``), which needs CANN and an NPU."""

import importlib.util
import subprocess
import sys

from ..errors import UserError
from .base import Backend

INSTALL = ("on a machine with an Ascend NPU and CANN, run `source /usr/local/Ascend/ascend-toolkit/set_env.sh`, "
           "then install the ais_bench tool (its aclruntime and ais_bench wheels) as its readme says: "
           "https://gitee.com/ascend/tools/tree/master/ais-bench_workload/tool/ais_bench")


class AclBackend(Backend):
    """Not run in this process: ``run_external`` starts ais_bench with the ais_bench flags it was given."""

    name = "acl"
    external = True

    @staticmethod
    def run_external(argv):
        """Run ``python3 -m ais_bench <argv>`` and return its exit status."""
        if importlib.util.find_spec("ais_bench") is None:
            raise UserError(f".om models run on Huawei's ais_bench, which is not installed here; {INSTALL}")
        return subprocess.call([sys.executable, "-m", "ais_bench", *argv])

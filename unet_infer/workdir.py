"""The work folder of a pipeline run: every path under it, spelled here only (scripts/run_all.sh
takes them from ``python3 -m unet_infer.driver``).

    WORK/
      sample/                        generated Carvana-format data (when no data= is given)
      prep_bin/<stem>.bin            stage 1 (preprocess)
      UNet_dynamic_bs.onnx           stage 2 (export)
      UNet_dynamic_sim.onnx          stage 3a (simplify)
      UNet_int8.onnx                 the quantised model of a backend that runs int8 (its quantized_name)
      UNet_bs8.onnx, UNet_bs8.om...  stage 3b: the backend's model for one batch size (its artefact)
      result/bs8/<stem>.bin          stage 4 (inference), renamed by stage 5
      result/bs8_summary.json        the scored run's ais_bench summary
      result/bs8_masks/<stem>.png    the worst and best predicted masks of a streamed run
      result/perf_bs8_summary.json   the pure-inference (--loop) run: the throughput figure
      result_bs8.txt, .json          stage 6 (score) per batch size
      result.txt, result.json        the last batch size's scores
      result/<run>_bs8/, result_<run>_bs8.txt, .json, result_<run>.txt, .json, ...
                                     the results of another backend or precision than the one
                                     whose results the plain names hold, kept beside them: the
                                     same names with the run's name (``<backend>_<precision>``,
                                     ``stages.run_tag``) before the batch size
      report/                        stage 7
      .stages/<stage>.json           what each finished stage was made from (see ``stages``)
      .lock                          held by the run in progress (scripts/run_all.sh's flock)
"""

import re
from pathlib import Path

SIMPLIFIED = "UNet_dynamic_sim.onnx"  # named in onnxfile's missing-model hint too
RESULT_RE = re.compile(r"result_(?:(.+)_)?bs([1-9][0-9]*)\.json")  # result_bs8.json, result_<run>_bs8.json


def run_paths(results, name):
    """A run's output folder and its summary, as ais_bench names them (its --output and
    --output_dirname): ``(results/<name>, results/<name>_summary.json)``."""
    return Path(results) / name, Path(results) / f"{name}_summary.json"


class Workdir:
    """Paths of one work folder (nothing is created here); ``run``: the results' names of one
    backend and precision (``stages.run_tag``, e.g. onnxruntime_int8; "" the plain names)."""

    def __init__(self, root, run=""):
        self.root = Path(root)
        self.run = run
        self.prefix = f"{run}_" if run else ""
        self.sample = self.root / "sample"
        self.prep = self.root / "prep_bin"
        self.onnx = self.root / "UNet_dynamic_bs.onnx"
        self.simplified = self.root / SIMPLIFIED
        self.results = self.root / "result"
        self.report = self.root / "report"
        self.stages = self.root / ".stages"
        self.lock = self.root / ".lock"  # held (flock) by the run in progress: one run at a time per work folder

    def __truediv__(self, name):
        return self.root / name

    def quantized(self, backend_cls):
        """The backend's dynamic-batch quantised model, e.g. UNet_int8.onnx."""
        return self.root / backend_cls.quantized_name

    def model(self, backend_cls, precision, batchsize, weights):
        """The model the runner loads for a batch size: the backend's artefact, or the checkpoint."""
        name = backend_cls.artefact(precision, batchsize)
        return Path(weights) if name is None else self.root / name

    def model_source(self, backend_cls, precision):
        """What the batch-size models are compiled from: the quantised or the simplified model."""
        return self.quantized(backend_cls) if precision in backend_cls.quantized else self.simplified

    def run_name(self, batchsize):
        """The scored run's name: its outputs' folder under ``result/`` (the runner's --output_dirname)."""
        return f"{self.prefix}bs{batchsize}"

    def outputs(self, batchsize):
        return run_paths(self.results, self.run_name(batchsize))[0]

    def summary(self, batchsize):
        return run_paths(self.results, self.run_name(batchsize))[1]

    def run_log(self, batchsize):
        return self.results / f"{self.run_name(batchsize)}.log"

    def masks(self, batchsize):
        return self.results / f"{self.run_name(batchsize)}_masks"

    def perf_name(self, batchsize):
        return f"perf_{self.prefix}bs{batchsize}"

    def perf_summary(self, batchsize):
        return run_paths(self.results, self.perf_name(batchsize))[1]

    def result_txt(self, batchsize=None):
        if batchsize is None:
            return self.root / (f"result_{self.run}.txt" if self.run else "result.txt")
        return self.root / f"result_{self.prefix}bs{batchsize}.txt"

    def result_json(self, batchsize=None):
        return self.result_txt(batchsize).with_suffix(".json")

    def scored_runs(self):
        """``[(run, batch size)]`` of every result of the folder (``result_bs<B>.json`` and
        ``result_<run>_bs<B>.json``): the plain names' first, then by run and batch size."""
        found = []
        for path in self.root.glob("result_*.json"):
            match = RESULT_RE.fullmatch(path.name)
            if match and path.is_file():
                found.append((match.group(1) or "", int(match.group(2))))
        return sorted(found)

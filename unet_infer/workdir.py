"""The work folder of a pipeline run: every path under it, spelled here only (scripts/run_all.sh
takes them from ``python3 -m unet_infer.stages``: ``plan`` and ``lock``).

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
      report/                        stage 7
      .stages/<stage>.json           what each finished stage was made from (see ``stages``)
      .lock                          held by the run in progress (scripts/run_all.sh's flock)
"""

from pathlib import Path

SAMPLE = "sample"
PREP = "prep_bin"
ONNX = "UNet_dynamic_bs.onnx"
SIMPLIFIED = "UNet_dynamic_sim.onnx"
RESULT_DIR = "result"
REPORT = "report"
STAGES = ".stages"
LOCK = ".lock"


class Workdir:
    """Paths of one work folder (nothing is created here)."""

    def __init__(self, root):
        self.root = Path(root)

    def __truediv__(self, name):
        return self.root / name

    @property
    def sample(self):
        return self.root / SAMPLE

    @property
    def prep(self):
        return self.root / PREP

    @property
    def onnx(self):
        return self.root / ONNX

    @property
    def simplified(self):
        return self.root / SIMPLIFIED

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

    @property
    def results(self):
        return self.root / RESULT_DIR

    def run_name(self, batchsize):
        """The scored run's name: its outputs' folder under ``result/`` (the runner's --output_dirname)."""
        return f"bs{batchsize}"

    def outputs(self, batchsize):
        return self.results / self.run_name(batchsize)

    def summary(self, batchsize):
        return self.results / f"{self.run_name(batchsize)}_summary.json"

    def run_log(self, batchsize):
        return self.results / f"{self.run_name(batchsize)}.log"

    def masks(self, batchsize):
        return self.results / f"{self.run_name(batchsize)}_masks"

    def perf_name(self, batchsize):
        return f"perf_bs{batchsize}"

    def perf_summary(self, batchsize):
        return self.results / f"{self.perf_name(batchsize)}_summary.json"

    def result_txt(self, batchsize=None):
        return self.root / ("result.txt" if batchsize is None else f"result_bs{batchsize}.txt")

    def result_json(self, batchsize=None):
        return self.result_txt(batchsize).with_suffix(".json")

    def scored_batchsizes(self):
        """Batch sizes with a ``result_bs<B>.json``, in increasing order."""
        found = []
        for path in self.root.glob("result_bs*.json"):
            digits = path.stem[len("result_bs"):]
            if digits.isdigit() and int(digits) > 0 and path.is_file():
                found.append(int(digits))
        return sorted(found)

    @property
    def report(self):
        return self.root / REPORT

    @property
    def stages(self):
        return self.root / STAGES

    @property
    def lock(self):
        """Held (flock) by the run in progress: one run at a time per work folder."""
        return self.root / LOCK

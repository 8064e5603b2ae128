"""The checkpoints shipped in weights/, made by scripts/train_bundled.sh: the main job's
(``BUNDLED_WEIGHTS``, width 12) and predict's (``PREDICT_WEIGHTS``, width 22), and the name every
model, summary and result gives a checkpoint (:func:`weights_id`)."""

import hashlib
from pathlib import Path

BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "unet_carvana.pth"
PREDICT_WEIGHTS = BUNDLED_WEIGHTS.with_name("unet_carvana_predict.pth")


def weights_id(path):
    """``"<file name> sha256:<first 16 hex digits>"``, recorded in every model (ONNX metadata
    ``unet_infer.weights``), summary and result, so that runs of different weights never mix unawares."""
    return f"{Path(path).name} sha256:{file_sha256(path)[:16]}"


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

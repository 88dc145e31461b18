"""Inference: the :class:`Predictor` API, batch folder inference plumbing and model export.

* :mod:`.predictor` -- ``Predictor.from_checkpoint(path).predict(video)`` / ``.predict_many(paths)``;
* :mod:`.batch` -- folder/list scanning and the resumable CSV/JSONL :class:`ResultWriter` (tools/infer.py);
* :mod:`.export` -- TorchScript / ONNX export with an eager parity check (tools/export.py).
"""

from cgd_video.inference.batch import VIDEO_EXTENSIONS, ResultWriter, scan_inputs
from cgd_video.inference.export import check_parity, export_model, load_exported
from cgd_video.inference.predictor import Predictor, load_model_from_checkpoint

__all__ = [
    "Predictor",
    "load_model_from_checkpoint",
    "VIDEO_EXTENSIONS",
    "ResultWriter",
    "scan_inputs",
    "export_model",
    "load_exported",
    "check_parity",
]

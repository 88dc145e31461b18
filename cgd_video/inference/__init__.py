"""Inference: the :class:`Predictor` API, batch folder inference plumbing and model export.

* :mod:`.predictor` -- ``Predictor.from_checkpoint(path).predict(video)`` / ``.predict_many(paths)``;
* :mod:`.batch` -- the resumable CSV/JSONL :class:`ResultWriter` (tools/infer.py; finding the videos is
  :mod:`cgd_video.data.scan`);
* :mod:`.export` -- TorchScript / ONNX export with an eager parity check (tools/export.py).
"""

from cgd_video.inference.batch import ResultWriter
from cgd_video.inference.export import check_parity, export_model, load_exported
from cgd_video.inference.predictor import Predictor, load_model_from_checkpoint

__all__ = [
    "Predictor",
    "load_model_from_checkpoint",
    "ResultWriter",
    "export_model",
    "load_exported",
    "check_parity",
]

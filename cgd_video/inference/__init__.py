"""Inference: the :class:`Predictor` API, batch folder inference plumbing and model export.

* :mod:`.predictor` -- ``Predictor.from_checkpoint(path).predict(video)`` / ``.predict_many(paths)``
  (the checkpoint's config is read by :mod:`cgd_video.boundary.evaluation`);
* :mod:`.batch` -- :func:`run_inference` into the resumable CSV/JSONL :class:`ResultWriter` (tools/infer.py;
  finding the videos is :mod:`cgd_video.data.scan`);
* :mod:`.export` -- TorchScript / ONNX export with an eager parity check (tools/export.py).
"""

from cgd_video.inference.batch import ResultWriter, run_inference
from cgd_video.inference.export import check_parity, export_model, load_exported
from cgd_video.inference.predictor import Predictor

__all__ = [
    "Predictor",
    "ResultWriter",
    "run_inference",
    "export_model",
    "load_exported",
    "check_parity",
]

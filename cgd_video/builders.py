"""Compatibility shim: the config boundary now lives in :mod:`cgd_video.boundary`.

``boundary.model`` builds models, ``boundary.data`` datasets and class names, ``boundary.training`` the
training job. These names are re-exported here for callers not yet moved; new code imports from
``cgd_video.boundary``.
"""

from cgd_video.boundary.data import (  # noqa: F401
    DataConfigError,
    build_test_dataset,
    build_train_dataset,
    read_classes_for,
    test_dataset_kwargs,
    train_dataset_kwargs,
)
from cgd_video.boundary.model import GENERIC_MODEL, build_model, build_model_from_checkpoint, model_kwargs  # noqa: F401

__all__ = [
    "model_kwargs",
    "build_model",
    "build_model_from_checkpoint",
    "read_classes_for",
    "DataConfigError",
    "train_dataset_kwargs",
    "test_dataset_kwargs",
    "build_train_dataset",
    "build_test_dataset",
]

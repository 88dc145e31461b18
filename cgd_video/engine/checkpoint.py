"""Checkpoints: atomic save, safe load (``weights_only=True``), compatibility checks, RNG states.

A checkpoint is plain data (DESIGN.md "Checkpoints"): ``model`` (state_dict), ``optimizer``, ``scaler``,
``epoch`` (completed epochs), ``iteration`` (completed optimiser steps), ``rng`` (rank 0's RNG state,
tensors only), ``rng_per_rank`` (every rank's, in rank order), ``hooks`` (each training hook's own state),
``cfg`` (YAML string), ``classes``, ``arch`` / ``recipe`` (flat ``{"KEY.NAME": value}`` dicts that the
config boundary derives from the keys it reads to build the model / the training trajectory) and
``model_fingerprint`` (hash of ``arch``). Loading never unpickles code: ``torch.load(..., weights_only=True)``.
This module sees no config: compatibility is a comparison of those dicts (:func:`check_compatible`).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import nn

from cgd_video.utils.atomic import atomic_torch_save

__all__ = [
    "CheckpointError",
    "fingerprint",
    "check_compatible",
    "get_rng_state",
    "set_rng_state",
    "unwrap_model",
    "save_checkpoint",
    "load_checkpoint",
]


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable or does not fit the current model/config (message says why)."""


def fingerprint(keys: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of a ``{"KEY": value}`` dict, order-independent."""
    text = "\n".join(f"{k}={keys[k]!r}" for k in sorted(keys))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """The keys of ``new`` whose value differs from the checkpoint's (or that it lacks). A key only the
    checkpoint has is not read now (an option of a module this model does not have, which the module's own
    key reports, e.g. ``MODEL.ATTENTION``), so it cannot make this run differ."""
    return [f"  {k}: checkpoint {old.get(k)!r} vs now {new[k]!r}" for k in sorted(new) if old.get(k) != new[k]]


def check_compatible(stored: Mapping[str, Any], now: Mapping[str, Any], path: str, what: str = "model") -> None:
    """Raise :class:`CheckpointError` naming every key whose value differs between ``stored`` and ``now``.

    ``what="model"``: the architecture keys (the weights would not fit); ``what="recipe"``: the keys that
    shape the training trajectory (a resume would not continue the same run).
    """
    diffs = _differences(stored, now)
    if not diffs:
        return
    if what == "model":
        raise CheckpointError(f"{path} holds a different model (fingerprint {fingerprint(stored)} vs "
                              f"{fingerprint(now)}):\n" + "\n".join(diffs))
    raise CheckpointError(f"refusing to resume from {path}: it was trained with a different config:\n"
                          + "\n".join(diffs) + "\nUse a new OUTPUT_DIR, or pass the checkpoint's values on the "
                          "command line.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def get_rng_state() -> Dict[str, torch.Tensor]:
    """Python, NumPy, torch CPU (and CUDA) RNG states, all as tensors (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python_version": torch.tensor(version, dtype=torch.int64),
        "python_state": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": torch.tensor([gauss is not None, 0.0 if gauss is None else gauss], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_meta": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor(np_gauss, dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`get_rng_state`."""
    gauss_flag, gauss = state["python_gauss"].tolist()
    random.setstate(
        (int(state["python_version"]), tuple(state["python_state"].tolist()), gauss if gauss_flag else None)
    )
    pos, has_gauss = state["numpy_meta"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, float(state["numpy_gauss"]))
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    scaler: Optional[Any], epoch: int, iteration: int, meta: Optional[Dict[str, Any]] = None) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, fsync, ``os.replace``).

    ``meta``: plain data stored beside the weights (``cfg``, ``classes``, ``arch``, ``recipe``, ``hooks``,
    ``rng_per_rank``...); without an ``rng`` entry this process's RNG state is stored.
    """
    ckpt = {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": int(epoch),
        "iteration": int(iteration),
        "rng": get_rng_state(),
    }
    ckpt.update(meta or {})
    if "arch" in ckpt:
        ckpt["model_fingerprint"] = fingerprint(ckpt["arch"])
    return atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load with ``weights_only=True`` (data, never code); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot load checkpoint {path} safely (weights_only=True): {_reason(e)}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a cgd_video checkpoint (no 'model' entry)")
    return ckpt


def _reason(error: Exception) -> str:
    """The cause of a failed safe load, without torch's advice to retry with ``weights_only=False``
    (that would run the file's pickled code)."""
    text = str(error)
    for line in text.splitlines():
        if "Unsupported global" in line or "WeightsUnpickler error" in line:
            return "it holds pickled code, which is never loaded (" + line.split("error:")[-1].split(" Please use")[0].strip() + ")"
    lines = [x for x in text.splitlines() if x.strip() and "weights_only=False" not in x]
    return lines[0].strip() if lines else type(error).__name__

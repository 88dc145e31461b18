"""Checkpoints: atomic save, safe load (``weights_only=True``), compatibility checks, RNG states.

A checkpoint is plain data (DESIGN.md "Checkpoints"): ``model`` (state_dict), ``optimizer``, ``scaler``,
``epoch`` (completed epochs), ``iteration`` (completed optimiser steps), ``rng`` (tensors only),
``cfg`` (YAML string), ``classes`` (list of names), ``model_fingerprint`` (hash of the
architecture-defining keys). Loading never unpickles code: ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import torch
import yaml
from torch import nn

from cgd_video.utils.atomic import atomic_torch_save

__all__ = [
    "ARCH_KEYS",
    "RESUME_FREE_KEYS",
    "CheckpointError",
    "model_fingerprint",
    "get_rng_state",
    "set_rng_state",
    "unwrap_model",
    "save_checkpoint",
    "load_checkpoint",
    "check_model_compatible",
    "check_resume_compatible",
]

# Keys that define the network's parameters: a checkpoint only fits a model built with the same values.
ARCH_KEYS = (
    "MODEL.NAME", "MODEL.DEPTH", "MODEL.NUM_CLASSES", "MODEL.LAYOUT", "MODEL.ATTENTION", "MODEL.CGD_VARIANT",
    "MODEL.CGD_TEMPORAL", "MODEL.CGD_POSITION", "MODEL.NONLOCAL", "MODEL.NONLOCAL_PLACEMENT",
    "MODEL.CGNL_GROUPS", "DATA.NUM_FRAMES",
)
# Keys that may differ between a run and the run it resumes (they do not change the trajectory).
RESUME_FREE_KEYS = (
    "OUTPUT_DIR", "DATA.ROOT", "DATA.BACKEND", "DATA.VAL_LIST", "DATA.TEST_LIST", "DATA.CLASSES",
    "MODEL.PRETRAINED", "SOLVER.MAX_EPOCH", "TRAIN.DEVICE", "TRAIN.LOG_PERIOD", "TRAIN.CHECKPOINT_PERIOD",
    "TRAIN.CHECKPOINT_ITERS", "TRAIN.EVAL_PERIOD", "TRAIN.AUTO_RESUME", "TRAIN.STOP_AFTER_ITERS", "TEST.*",
    "DATALOADER.*",
)


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable or does not fit the current model/config (message says why)."""


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in dict(d).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cfg_dict(cfg: Any) -> Dict[str, Any]:
    """Flat {"A.B": value} from a CfgNode, a nested dict or a YAML string."""
    if isinstance(cfg, str):
        cfg = yaml.safe_load(cfg) or {}
    return _flatten(cfg)


def model_fingerprint(cfg: Any) -> str:
    """sha256 (16 hex digits) of the :data:`ARCH_KEYS` values."""
    flat = _cfg_dict(cfg)
    text = "\n".join(f"{k}={flat.get(k)!r}" for k in ARCH_KEYS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: Dict[str, Any], new: Dict[str, Any], keys: Iterable[str]) -> List[str]:
    return [f"  {k}: checkpoint {old.get(k)!r} vs now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check_model_compatible(ckpt: Dict[str, Any], cfg: Any, path: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the differing keys when the checkpoint's model differs."""
    if ckpt.get("model_fingerprint") == model_fingerprint(cfg):
        return
    diffs = _differences(_cfg_dict(ckpt.get("cfg", "")), _cfg_dict(cfg), ARCH_KEYS)
    raise CheckpointError(
        f"{path} holds a different model (fingerprint {ckpt.get('model_fingerprint')} vs "
        f"{model_fingerprint(cfg)}):\n" + "\n".join(diffs or ["  (no config stored)"])
    )


def _is_free(key: str) -> bool:
    return any(key == f or (f.endswith(".*") and key.startswith(f[:-1])) for f in RESUME_FREE_KEYS)


def check_resume_compatible(ckpt: Dict[str, Any], cfg: Any, path: str = "checkpoint") -> None:
    """Refuse to resume a run whose model or training recipe differs (all keys but RESUME_FREE_KEYS)."""
    check_model_compatible(ckpt, cfg, path)
    old, new = _cfg_dict(ckpt.get("cfg", "")), _cfg_dict(cfg)
    keys = sorted(k for k in set(old) | set(new) if not _is_free(k))
    diffs = _differences(old, new, keys)
    if diffs:
        raise CheckpointError(
            f"refusing to resume from {path}: it was trained with a different config:\n" + "\n".join(diffs)
            + "\nUse a new OUTPUT_DIR, or pass the checkpoint's values on the command line."
        )


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


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer],
    scaler: Optional[Any],
    epoch: int,
    iteration: int,
    cfg: Any,
    classes: List[str],
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, fsync, ``os.replace``)."""
    cfg_yaml = cfg if isinstance(cfg, str) else cfg.dump()
    ckpt = {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": int(epoch),
        "iteration": int(iteration),
        "rng": get_rng_state(),
        "cfg": cfg_yaml,
        "classes": list(classes),
        "model_fingerprint": model_fingerprint(cfg_yaml),
    }
    if extra:
        ckpt.update(extra)
    return atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load with ``weights_only=True`` (data, never code); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot load checkpoint {path} safely (weights_only=True): {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a cgd_video checkpoint (no 'model' entry)")
    return ckpt

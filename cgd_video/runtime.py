"""Runtime: the device, CPU threads, autocast (AMP) modes and ``torch.compile``, in one place.

Used by training, testing, inference and export alike; takes plain values (``"auto"``, ``"bf16"``,
``4``), never a config node.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Optional, Union

import torch
from torch import nn

__all__ = [
    "AMP_MODES",
    "amp_dtype",
    "autocast_context",
    "grad_scaler",
    "maybe_compile",
    "resolve_device",
    "set_cpu_threads",
]

# AMP mode -> autocast dtype ("none": full precision). fp16 also needs a GradScaler (:func:`grad_scaler`).
_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = tuple(_AMP_DTYPES)


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``None``/``"auto"`` -> cuda when available else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    A bare ``"cuda"`` means this process's GPU: ``cuda:LOCAL_RANK`` under torchrun (``cuda:0`` alone).
    ``"cuda"`` without a GPU raises ``RuntimeError``; any other name ``ValueError``.
    """
    name = "auto" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:N']")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was requested but no CUDA device is available; use cpu")
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def set_cpu_threads(n: int) -> None:
    """Set torch's intra-op threads when ``n > 0`` (0 keeps torch's default)."""
    if n > 0:
        torch.set_num_threads(n)


def amp_dtype(amp: str) -> Optional[torch.dtype]:
    """The autocast dtype of AMP mode ``amp`` (``None`` for ``"none"``); unknown modes raise ``ValueError``."""
    if amp not in _AMP_DTYPES:
        raise ValueError(f"AMP mode {amp!r} is not one of {sorted(_AMP_DTYPES)}")
    return _AMP_DTYPES[amp]


def autocast_context(device: torch.device, amp: str):
    """``torch.autocast`` for ``"bf16"``/``"fp16"``, a no-op context for ``"none"``."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A ``GradScaler``, enabled only for fp16 (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=amp_dtype(amp) is torch.float16)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (the ``OptimizedModule`` keeps the original as
    ``_orig_mod``, so checkpoints store the plain state_dict); the model itself otherwise."""
    return torch.compile(model) if enabled else model

"""Eval-time folding of CGD's per-sample scale into the following BatchNorm (paper Sec. 3.3).

"Implementation of CGD blocks": the global description can be merged with the batch-normalisation
parameters to avoid the extra *axpby* pass at inference time. In eval mode BN is the affine map
``bn(v) = k * v + shift`` with ``k = gamma / sqrt(var + eps)`` and ``shift = beta - k * mean``, so

    bn(X * s) = X * (s * k) + shift

where ``s = 1 + y`` is CGD's (N, C, T or 1, 1, 1) scale (Eq. 11). ``s * k`` is a tiny per-sample
tensor; the big tensor X is then read once and written once by a single ``torch.addcmul`` instead
of twice (``X * s``, then BN). The identity holds for any s that broadcasts to X, so the spatial
forms' (N, 1, T or 1, H, 1) / (N, 1, T or 1, 1, W) scales (Fig. 4b/c) fold the same way: ``s * k``
is then (N, C, T, H, 1), still far smaller than X.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["scaled_batch_norm"]


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm, ndim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(k, shift) of an eval-mode BN, shaped (1, C, 1, ..., 1) for an ``ndim``-D input."""
    var = bn.running_var.to(dtype)
    mean = bn.running_mean.to(dtype)
    k = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        k = k * bn.weight.to(dtype)
    shift = -mean * k
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    shape = (1, -1) + (1,) * (ndim - 2)
    return k.view(shape), shift.view(shape)


def scaled_batch_norm(x: Tensor, scale: Tensor, bn: nn.Module, relu: bool = False) -> Tensor:
    """``bn(x * scale)`` (then ReLU if ``relu``) with BN in eval mode, as one fused elementwise pass.

    Args:
        x: features with channels in dim 1, e.g. (N, C, T, H, W); any memory layout (the output
            keeps x's strides when x is dense, so a clip view of a (N*T, C, H, W) frame batch
            folds back without a copy).
        scale: CGD's ``module.scale(x)``, broadcastable to x, e.g. (N, C, T or 1, 1, 1), or a spatial
            CGD's (N, 1, T or 1, H, 1) / (N, 1, T or 1, 1, W).
        bn: a BatchNorm (1d/2d/3d; only its running statistics, affine parameters and eps are
            used, so a BatchNorm2d serves a 5-D clip view). Must be in eval mode.
        relu: apply ReLU in place on the result (saves the allocation of a separate ReLU).

    Returns a tensor of x's shape and dtype. The folded coefficients are computed in float32
    (float64 for float64 inputs) and cast to x's dtype.
    """
    if bn.training:
        raise ValueError(
            "cgd_video/models/folding.py: scaled_batch_norm folds BN's running statistics and needs "
            "bn in eval mode; in training call bn(x * scale)"
        )
    if scale.dim() != x.dim():
        raise ValueError(
            f"cgd_video/models/folding.py: scale must have x's rank ({x.dim()}), got {tuple(scale.shape)} "
            f"for x {tuple(x.shape)}"
        )
    if bn.running_mean is None:  # track_running_stats=False: eval BN normalises with batch statistics
        out = F.batch_norm(x * scale, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        return out.relu_() if relu else out
    dtype = torch.promote_types(x.dtype, torch.float32)
    k, shift = _bn_affine(bn, x.dim(), dtype)
    mult = (scale.to(dtype) * k).to(x.dtype)
    out = _cpu_affine(x, mult, shift.to(x.dtype)) if _eager_cpu(x) else None
    if out is None:
        out = torch.addcmul(shift.to(x.dtype), x, mult)
    return out.relu_() if relu else out


def _eager_cpu(x: Tensor) -> bool:
    """Eager CPU execution: traced/exported/compiled graphs take the shape-generic addcmul."""
    return (
        x.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
    )


def _cpu_affine(x: Tensor, mult: Tensor, shift: Tensor) -> Tensor | None:
    """``x * mult + shift`` through ATen's one-pass eval BN kernel, or None when it does not apply.

    On CPU, ``addcmul`` with two broadcast operands is slower than BN's per-channel kernel (about
    2x at (1, 64, 8, 56, 56)). When the non-spatial dims of x can be ordered so that x is
    contiguous (a plain clip, or the clip view of a (N*T, C, H, W) frame batch), every
    (sample, channel, frame) row becomes one BN "channel" with mean 0, var 1, eps 0, so BN computes
    exactly ``x * weight + bias`` with weight/bias the expanded ``mult``/``shift``.
    """
    if x.dim() < 3 or x.dtype not in (torch.float32, torch.float64):
        return None
    lead = 3 if x.dim() == 5 else 2  # rows: (N, C, T) of a clip, (N, C) otherwise
    if any(d != 1 for d in (*mult.shape[lead:], *shift.shape[lead:])):
        return None  # a per-row/column scale (spatial CGD, Fig. 4b/c): not one value per BN "channel"
    order = sorted(range(lead), key=lambda d: -x.stride(d))
    perm = order + list(range(lead, x.dim()))
    xp = x.permute(perm)
    if not xp.is_contiguous():
        return None
    rows = xp.shape[:lead].numel()
    full = xp.shape[:lead] + (1,) * (x.dim() - lead)
    weight = mult.expand(x.shape[:lead] + mult.shape[lead:]).permute(perm).reshape(full).reshape(rows)
    bias = shift.expand(x.shape[:lead] + shift.shape[lead:]).permute(perm).reshape(full).reshape(rows)
    ones = torch.ones(rows, dtype=x.dtype, device=x.device)
    zeros = torch.zeros(rows, dtype=x.dtype, device=x.device)
    out = F.batch_norm(xp.reshape(1, rows, -1), zeros, ones, weight, bias, False, 0.0, 0.0)
    return out.view(xp.shape).permute([perm.index(d) for d in range(x.dim())])

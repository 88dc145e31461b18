"""CGD's descriptor on pooled features (Eq. 10/12, Table 2), with its hand-written backward.

The descriptor maps the pooled (N, T', D) averages ``a`` (and maxima ``m``) of X to ``y`` (N, T'', D):

* one stage is ``tanh(g * (f . w) + b)`` (Eq. 10/11, O(D): the scalar ``f . w`` first, never the outer
  product ``g f^T``); ``sum_over_time`` adds the per-frame terms before the tanh (Eq. 12);
* ``g`` and ``f`` are ``a``, ``m`` or their softmax over the D entries (Table 2, v1..v7);
* the cascades v8..v10 run two first-level stages (batched as one, weights stacked) whose outputs
  feed a final stage.

:func:`descriptor_forward` returns ``y`` and a tape of the intermediates; :func:`descriptor_backward`
turns ``dL/dy`` into the gradients of the pools and of the stage parameters. The CGD training Function
(:mod:`cgd_video.models.cgd_kernels`) runs both without autograd: about 30 ops on (N, T', D) tensors
whose graph would otherwise cost more host time than the ops themselves. The forward is also the
plain-op path (eval, ``torch.compile``, tracing), where autograd differentiates it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DescriptorPlan", "stage", "descriptor_forward", "descriptor_backward"]


class DescriptorPlan(NamedTuple):
    """Which pooled tensors feed which stage (fixed when a CGD module is built)."""

    g_keys: tuple[str, ...]  # one per first-level stage: "a", "m", "sa" or "sm"
    f_keys: tuple[str, ...]
    softmax_keys: tuple[str, ...]  # "sa" / "sm": softmax over D of "a" / "m"
    sum_first_level: bool  # Eq. 12: per-frame terms summed before the tanh

    @property
    def cascaded(self) -> bool:
        return len(self.g_keys) > 1


def stage(g: Tensor, f: Tensor, weight: Tensor, bias: Tensor, sum_over_time: bool) -> tuple[Tensor, Tensor]:
    """One stage ``y = tanh(g * (f . w) + b)`` on (..., T', D) descriptors; returns (y, f . w).

    ``sum_over_time`` sums the terms ``g * (f . w)`` over T' before the tanh (Eq. 12). Plain mul + sum
    instead of matmul keeps it in float32 under autocast.
    """
    s = (f * weight).sum(-1, keepdim=True)
    if sum_over_time:
        return torch.tanh((g * s).sum(-2, keepdim=True) + bias), s
    return torch.tanh(torch.addcmul(bias, g, s)), s


def _stage_backward(dy: Tensor, y: Tensor, g: Tensor, f: Tensor, weight: Tensor, bias_shape: torch.Size,
                    s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (g, f, w, b) of :func:`stage` from ``dy``; a summed time axis broadcasts back over T'."""
    dz = torch.ops.aten.tanh_backward(dy, y)
    ds = (dz * g).sum(-1, keepdim=True)
    return (_sum_to(dz * s, g.shape), _sum_to(ds * weight, f.shape), _sum_to(ds * f, weight.shape),
            _sum_to(dz, bias_shape))


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """``t.sum_to_size(shape)``: the gradient of a broadcast, summed over the broadcast dims."""
    return t if t.shape == shape else t.sum_to_size(shape)


def _gather(pools: dict[str, Tensor], keys: tuple[str, ...]) -> Tensor:
    """(N, K, T', D) for K first-level stages; a source shared by all of them is broadcast, not copied."""
    if all(k == keys[0] for k in keys):
        return pools[keys[0]].unsqueeze(1)
    return torch.stack([pools[k] for k in keys], 1)


def _scatter(grads: dict[str, Tensor], keys: tuple[str, ...], d: Tensor) -> None:
    """Add the (N, K or 1, T', D) gradient of :func:`_gather`'s output into ``grads`` per source key."""
    for i, key in enumerate(keys if d.shape[1] == len(keys) else keys[:1]):
        grads[key] = d[:, i] if key not in grads else grads[key] + d[:, i]


def descriptor_forward(plan: DescriptorPlan, pools: dict[str, Tensor], params: list[Tensor]) -> tuple[Tensor, tuple]:
    """``y`` (Eq. 10/12, Table 2) from pools {"a": (N, T', D)[, "m": ...]} and [w0, b0, w1, b1, ...].

    Returns ``(y, tape)``; ``tape`` holds what :func:`descriptor_backward` needs. The parameters are cast
    to the pools' dtype (float32 under autocast, float64 for gradcheck).
    """
    dtype = pools["a"].dtype
    params = [p if p.dtype == dtype else p.to(dtype) for p in params]
    pools = dict(pools)
    for key in plan.softmax_keys:
        pools[key] = F.softmax(pools[key[1:]], dim=-1)
    if not plan.cascaded:
        g, f = pools[plan.g_keys[0]], pools[plan.f_keys[0]]
        y, s = stage(g, f, params[0], params[1], plan.sum_first_level)
        return y, (pools, [(y, g, f, params[0], params[1].shape, s)])
    w0, b0, w1, b1, wf, bf = params
    g, f = _gather(pools, plan.g_keys), _gather(pools, plan.f_keys)
    w, b = torch.stack([w0, w1]).unsqueeze(1), torch.stack([b0, b1]).unsqueeze(1)  # (2, 1, D)
    y1, s1 = stage(g, f, w, b, plan.sum_first_level)
    psi, phi = y1.unbind(1)
    y, s2 = stage(psi, phi, wf, bf, False)
    return y, (pools, [(y, psi, phi, wf, bf.shape, s2), (y1, g, f, w, b.shape, s1)])


def descriptor_backward(plan: DescriptorPlan, tape: tuple, dy: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
    """Gradients of the raw pools ({"a": ..., ["m": ...]}, as given to the forward) and of the params."""
    pools, stages = tape
    grads: dict[str, Tensor] = {}
    if not plan.cascaded:
        dg, df, dw, db = _stage_backward(dy, *stages[0])
        grads[plan.g_keys[0]] = dg
        grads[plan.f_keys[0]] = df if plan.f_keys[0] != plan.g_keys[0] else dg + df
        d_params = [dw, db]
    else:
        d_psi, d_phi, dwf, dbf = _stage_backward(dy, *stages[0])
        dg, df, dw, db = _stage_backward(torch.stack([d_psi, d_phi], 1), *stages[1])
        _scatter(grads, plan.g_keys, dg)
        _scatter(grads, plan.f_keys, df)
        (dw0, dw1), (db0, db1) = dw[:, 0].unbind(0), db[:, 0].unbind(0)
        d_params = [dw0, db0, dw1, db1, dwf, dbf]
    for key in plan.softmax_keys:
        if key in grads:
            sm, d_sm = pools[key], grads.pop(key)
            d_raw = sm * (d_sm - (d_sm * sm).sum(-1, keepdim=True))
            grads[key[1:]] = d_raw if key[1:] not in grads else grads[key[1:]] + d_raw
    return grads, d_params

"""CGD's passes over the big tensor X (N, C, T, H, W) and the one autograd Function of a training step.

:class:`CGDFunction` is a whole CGD module, ``X * (1 + y)`` with ``y`` the descriptor of the pooled X
(Eq. 10-12, Table 2), as one node of the autograd graph: the pools, the descriptor
(:mod:`cgd_video.models.cgd_descriptor`, forward and hand-written backward) and the rescale. What is
kept for the backward is the *output* ``X * s`` (which the BatchNorm after CGD saves anyway, so it costs
no memory of its own), the (N, C, T) scale and max positions and the descriptor's small intermediates,
never X: ``d s = sum_hw(grad * X) = sum_hw(grad * out) / s`` (``s = 1 + tanh(.) > 0``;
:func:`positive_scale` keeps it so). Every temporal mode takes it, ``mean`` (Table 3's row) included.

On CUDA (float32 / bfloat16 / float16; modes other than ``mean``) the passes over X are the Triton
kernels of :mod:`cgd_video.models.cgd_triton`: one kernel for both pools, two for the backward (they
find X's max positions as ``out == max(X) * s``, the forward's rounding, so exactly); the eager ops
below are the fallback (CPU, float64, no triton) and the reference they are tested against.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cgd_video.models import cgd_triton
from cgd_video.models.cgd_descriptor import descriptor_backward, descriptor_forward
from cgd_video.models.folding import _cpu_affine

__all__ = ["CGDFunction", "channel_rows", "frame_max", "frame_pools", "positive_scale", "temporal_mean_rows"]

# s = 1 + tanh(z) is kept >= this, so that out = X * s determines X's max position and d s (the tanh
# saturates at -1 for z < -9 in float32, where s would round to 0; its gradient is 0 there anyway).
S_MIN = 2.0**-24


def positive_scale(y: Tensor) -> Tensor:
    """``1 + y`` (Eq. 11), at least :data:`S_MIN`."""
    return (1.0 + y).clamp_min(S_MIN)


def channel_rows(x: Tensor) -> Tensor | None:
    """(N, T, H*W, C) view of x (N, C, T, H, W) when channels are its innermost dim, else None.

    That is the layout of a channels_last_3d clip and of the clip view of a channels_last
    (N*T, C, H, W) frame batch. CPU reductions over dims (3, 4) of such a tensor take a strided
    kernel 10-60x slower than reducing dim 2 of this view (C stays contiguous); a plain
    contiguous x returns None and keeps the (3, 4) reductions, already the fast ones there.
    """
    if x.is_contiguous():
        return None
    v = x.permute(0, 2, 3, 4, 1)
    return v.flatten(2, 3) if v.is_contiguous() else None


def frame_pools(x: Tensor, dtype: torch.dtype, need_max: bool) -> tuple[Tensor, Tensor | None]:
    """Spatial average and max of every (sample, channel, frame) as (N, C, T) in ``dtype``."""
    rows = channel_rows(x)
    src, dims = (x, (3, 4)) if rows is None else (rows, 2)
    avg = src.mean(dims) if x.dtype == dtype else src.mean(dims, dtype=dtype)
    mx = src.amax(dims) if need_max else None
    if rows is not None:  # (N, T, C) -> (N, C, T), a view
        avg = avg.transpose(1, 2)
        mx = None if mx is None else mx.transpose(1, 2)
    if mx is None:
        return avg, None
    return avg, (mx if mx.dtype == dtype else mx.to(dtype))


def temporal_mean_rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """x (N, C, T, H, W) averaged over T as (N, C, H*W) in ``dtype``: what the ``mean`` mode pools.

    Channels-innermost clips are reduced on their (N, T, H*W, C) view (C kept contiguous).
    """
    rows = channel_rows(x)
    if rows is not None:
        return rows.mean(1, dtype=dtype).transpose(1, 2)
    return x.mean(2, dtype=dtype).flatten(2)


def _dot_hw(a: Tensor, b: Tensor) -> Tensor:
    """sum over H, W of a * b as (N, C, T), without an (N, C, T, H, W) temporary where possible.

    Channels-innermost a and b are reduced along dim 2 of their (N, T, H*W, C) views
    (:func:`channel_rows`): about 5x faster on CPU than the vecdot over strided H*W rows.
    """
    ra, rb = channel_rows(a), channel_rows(b)
    if ra is not None and rb is not None:
        return torch.linalg.vecdot(ra, rb, dim=2).transpose(1, 2)
    return torch.linalg.vecdot(a.flatten(3), b.flatten(3))


def _affine(x: Tensor, mult: Tensor, shift: Tensor) -> Tensor:
    """``x * mult + shift`` with per-(sample, channel[, frame]) mult/shift (N, C, T or 1, 1, 1), one pass.

    Channels innermost: ``addcmul`` on the (N, T, H*W, C) view, the per-channel factors broadcast
    along the contiguous C (on the 5-D view the CPU kernel is 30x slower at 1x64x8x56x56). Large
    contiguous CPU tensors: the one-pass BN kernel (``_cpu_affine``, 2x ``addcmul`` at that size; for
    small ones ``addcmul``'s lower fixed cost wins). Otherwise ``addcmul``.
    """
    rows = channel_rows(x)
    if rows is not None:
        n, c, t, h, w = x.shape
        out = torch.addcmul(shift[..., 0, 0].transpose(1, 2).unsqueeze(2), rows,
                            mult[..., 0, 0].transpose(1, 2).unsqueeze(2))  # (N, T, H*W, C)
        return out.view(n, t, h, w, c).permute(0, 4, 1, 2, 3)
    out = _cpu_affine(x, mult, shift) if x.device.type == "cpu" and x.numel() >= _BN_KERNEL_MIN else None
    return torch.addcmul(shift, x, mult) if out is None else out


_BN_KERNEL_MIN = 1 << 17


def _rows_max(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Max over dim 2 of channels-innermost rows (N, T, H*W, C) and its H*W index, both (N, T, C).

    Through ``max_pool2d_with_indices`` on the channels_last (N*T, C, H*W, 1) frame view of the same
    memory: on the CPU 4x faster than ``max(dim=2)`` of the rows (1x64x16x56x56, one thread).
    """
    n, t, hw, c = rows.shape
    frames = rows.reshape(n * t, hw, 1, c).permute(0, 3, 1, 2)
    mx, idx = torch.nn.functional.max_pool2d_with_indices(frames, (hw, 1))
    return mx.view(n, t, c), idx.view(n, t, c)


def frame_max(x: Tensor) -> tuple[Tensor, Tensor]:
    """Spatial max of every (sample, channel, frame) of x (N, C, T, H, W) and its index h*W + w, (N, C, T).

    Found once in the forward, so the backward needs no second search over X (an ``argmax`` pass
    cost more than the rest of CGD's backward at 1x64x16x56x56 on the CPU).
    """
    rows = channel_rows(x)
    if rows is not None:
        mx, idx = _rows_max(rows)
        return mx.transpose(1, 2), idx.transpose(1, 2)
    return x.flatten(3).max(-1)


def _add_at_max(grad_x: Tensor, idx: Tensor, d_max: Tensor) -> Tensor:
    """Add d_max (N, C, T) into grad_x (N, C, T, H, W) at the spatial positions ``idx`` (N, C, T).

    ``idx`` and ``d_max`` may have T = 1 with grad_x's T > 1 (the ``mean`` mode's max, taken over the
    temporal mean: every frame of a position gets the same share). Returns grad_x (made dense if needed).
    """
    n, c, t = grad_x.shape[:3]
    d_max = d_max.to(grad_x.dtype)
    rows = channel_rows(grad_x)
    if rows is not None:  # (N, T, H*W, C)
        rows.scatter_add_(2, idx.transpose(1, 2).unsqueeze(2).expand(n, t, 1, c),
                          d_max.transpose(1, 2).unsqueeze(2).expand(n, t, 1, c))
        return grad_x
    flat = grad_x.flatten(3)
    if not flat._is_view():  # H, W not mergeable in memory: scatter into a dense copy
        grad_x = grad_x.contiguous()
        flat = grad_x.flatten(3)
    flat.scatter_add_(-1, idx.unsqueeze(-1).expand(n, c, t, 1), d_max.unsqueeze(-1).expand(n, c, t, 1))
    return grad_x


def _use_triton(x: Tensor, module) -> bool:
    return module.temporal != "mean" and x.dtype in _TRITON_DTYPES and cgd_triton.available(x)


def _pool_with_index(x: Tensor, module, dtype: torch.dtype, triton: bool):
    """(avg, max, index of the max) of X as the module pools them; max and index are None if unused.

    ``mean`` mode: (N, C) pools of the temporal mean of X (index into H*W); other modes: (N, C, T).
    On the Triton path the index stays None: the backward finds the max positions itself.
    """
    if triton:
        avg, mx = cgd_triton.pool_stats(x, module._need_max)
        return avg, mx, None
    if module.temporal == "mean":
        xm = temporal_mean_rows(x, dtype)  # (N, C, H*W)
        if not module._need_max:
            return xm.mean(-1), None, None
        mx, idx = xm.max(-1)
        return xm.mean(-1), mx, idx
    avg, _ = frame_pools(x, dtype, need_max=False)
    if not module._need_max:
        return avg, None, None
    mx, idx = frame_max(x)
    return avg, (mx if mx.dtype == dtype else mx.to(dtype)), idx


class CGDFunction(torch.autograd.Function):
    """A whole CGD module, ``out = X * s(X)`` (Eq. 10-12, Table 2), with a hand-written backward.

    Forward: the pools (average, max and its position), the descriptor
    (:func:`~cgd_video.models.cgd_descriptor.descriptor_forward`) and the rescale, without recording
    a graph. Kept for the backward: the *output* ``X * s`` (which the BatchNorm after CGD saves
    anyway, so it costs no memory of its own), the scale, the max positions and the descriptor's
    (N, T', D) intermediates; never X. Backward:

    * ``d s = sum_hw(grad * X) = sum_hw(grad * out) / s`` (s > 0, :func:`positive_scale`), one read of
      grad and out;
    * the descriptor's backward gives ``d avg``, ``d max`` and the parameters' gradients;
    * ``grad_x = grad * s + d avg / HW`` in one pass, plus ``d max`` at the max positions.

    On CUDA (float32 / bfloat16 / float16, modes other than ``mean``) the passes over X are the Triton
    kernels of :mod:`cgd_video.models.cgd_triton`, which find the max positions as ``out == max * s``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, module, *params: Tensor) -> Tensor:
        triton = _use_triton(x, module)
        avg, mx, idx = _pool_with_index(x, module, torch.promote_types(x.dtype, torch.float32), triton)
        y, tape = descriptor_forward(module.plan, module._arrange(avg, mx), list(params))
        s_rows = module._scale_rows(y, x.shape, x.dtype)  # (N, C, T')
        out = x * s_rows.unsqueeze(-1).unsqueeze(-1)
        ctx.module, ctx.tape, ctx.y_shape, ctx.triton = module, tape, y.shape, triton
        ctx.mx, ctx.param_dtypes = mx, [p.dtype for p in params]
        ctx.save_for_backward(out, s_rows, idx)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        out, s_rows, idx = ctx.saved_tensors  # s_rows: (N, C, T' or 1) in out's dtype
        module = ctx.module
        fused = ctx.triton  # the forward found no max positions (idx is None): the kernels find them
        if fused and not cgd_triton.available(grad):  # grad's H, W not one strided dim (out.sum(4), a transpose)
            grad = grad.contiguous()
        # max(X) * s rounded as the forward's product rounded it: where out equals it, X had its max
        m_ref = ctx.mx.to(out.dtype) * s_rows if fused and ctx.mx is not None else None
        dot, cnt = cgd_triton.backward_rows(grad, out, m_ref) if fused else (_dot_hw(grad, out), None)
        if s_rows.shape[2] == 1 and dot.shape[2] != 1:
            dot = dot.sum(2, keepdim=True)
        dtype = ctx.tape[0]["a"].dtype
        d_s = dot.to(dtype) / s_rows.to(dtype)  # d s = sum_hw(grad * X), (N, C, T')
        d_y = torch.where(s_rows > S_MIN, d_s, 0).transpose(1, 2).reshape(ctx.y_shape)  # clamp_min's gradient
        d_pools, d_params = descriptor_backward(module.plan, ctx.tape, d_y)
        d_params = [d.to(dt) for d, dt in zip(d_params, ctx.param_dtypes)]
        if not ctx.needs_input_grad[0]:  # X needs no gradient (a frozen stem, say): no pass over X
            return (None, None, *d_params)
        d_avg, d_max = module._unarrange(d_pools, out.shape)
        n, c, t, h, w = out.shape
        if fused:
            d = None if m_ref is None else d_max.float() / cnt
            grad_x = cgd_triton.backward_apply(grad, out, s_rows.float(), (d_avg / (h * w)).float(), m_ref, d)
        else:
            if module.temporal == "mean":  # pools of the temporal mean: every frame gets 1/T of each
                d_avg, d_max = (d_avg / t).unsqueeze(-1), None if d_max is None else (d_max / t).unsqueeze(-1)
                idx = None if idx is None else idx.unsqueeze(-1)
            shift = (d_avg / (h * w)).to(out.dtype).unsqueeze(-1).unsqueeze(-1)
            grad_x = _affine(grad, s_rows.unsqueeze(-1).unsqueeze(-1), shift)
            if d_max is not None:
                grad_x = _add_at_max(grad_x, idx, d_max)
        return (grad_x, None, *d_params)


_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

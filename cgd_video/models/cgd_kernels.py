"""CGD's passes over the big tensor X (N, C, T, H, W): pooling, the rescale and their hand-written backwards.

:func:`pooled_rescale` is Eq. 11, ``X * (1 + y)`` with ``y`` the descriptor of the pooled X (Eq. 10/12,
Table 2): a pooling Function, the descriptor on the ordinary autograd graph, and a rescale Function.
What is kept for the backward is the *output* ``X * s`` (which the BatchNorm after CGD saves anyway,
so it costs no memory of its own) and the (N, C, T) pools and scale, never X:
``d s = sum_hw(grad * X) = sum_hw(grad * out) / s`` (``s = 1 + tanh(.) > 0``; :func:`positive_scale`
keeps it so), and X's max position is out's (s > 0 per row): on the CPU its argmax; in the Triton
kernels, where ``out == max(X) * s``, the same rounding as the forward's product, so exact).

On CUDA (float32 / bfloat16 / float16) the passes over X are the Triton kernels of
:mod:`cgd_video.models.cgd_triton`: one kernel for both pools, two for the backward; the eager ops
below are the fallback (CPU, float64, no triton) and the reference they are tested against.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cgd_video.models import cgd_triton
from cgd_video.models.folding import _cpu_affine

__all__ = ["PooledRescale", "channel_rows", "frame_pools", "pooled_rescale", "positive_scale"]

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


def _spatial_argmax(x: Tensor) -> Tensor:
    """Index h*W + w of every (sample, channel, frame) maximum of x (N, C, T, H, W) as (N, C, T).

    Through ``max_pool2d_with_indices`` on a channels_last frame batch (a view when x's channels are
    innermost, else one copy): on the CPU 1.5-4x faster than ``argmax`` over H*W on contiguous
    clips and 10-25x on channels_last_3d ones (1x2048x1x4x4 to 1x64x8x56x56, one thread).
    """
    n, c, t, h, w = x.shape
    rows = channel_rows(x)
    rows = x.permute(0, 2, 3, 4, 1).contiguous() if rows is None else rows  # (N, T, [H, W | H*W], C)
    frames = rows.reshape(n * t, h, w, c).permute(0, 3, 1, 2)  # channels_last (N*T, C, H, W)
    idx = torch.nn.functional.max_pool2d_with_indices(frames, (h, w))[1]  # (N*T, C, 1, 1)
    return idx.view(n, t, c).transpose(1, 2)


def _add_max_grad(grad_x: Tensor, out: Tensor, d_max: Tensor) -> Tensor:
    """Add d_max (N, C, T) into grad_x at the spatial max of every row of ``out = X * s``.

    s > 0 per row, so out's first maximum is X's (exact ties of the max, or ties that the rounding of
    X * s creates, give their row's d_max to the first of them, a valid subgradient of the max; the
    Triton path splits it between exact ties as ``amax`` does). Returns grad_x (made dense if needed).
    """
    idx = _spatial_argmax(out)
    flat = grad_x.flatten(3)
    if not flat._is_view():
        grad_x = grad_x.contiguous()
        flat = grad_x.flatten(3)
    flat.scatter_add_(-1, idx.unsqueeze(-1), d_max.to(grad_x.dtype).unsqueeze(-1))
    return grad_x


class _Link:
    """What the rescale's backward hands to the pooling's backward, which always runs after it (the
    pools feed the descriptor, the descriptor feeds the scale, the scale feeds the rescale)."""

    __slots__ = ("triton", "fused", "mx", "grad", "out", "s", "m_ref", "cnt")

    def __init__(self, triton: bool) -> None:
        self.triton, self.fused = triton, False
        self.mx = self.grad = self.out = self.s = self.m_ref = self.cnt = None


def pooled_rescale(x: Tensor, module, params: list[Tensor]) -> Tensor:
    """``x * scale(avg(x), max(x))`` (Eq. 11) with hand-written backwards over X (see :class:`PooledRescale`).

    Autograd's generic graph makes three full-size gradients for X (from the rescale, the average
    pool and the tie mask of ``amax``), sums them, and keeps X alive. Here two Functions bracket the
    descriptor, which stays on the ordinary autograd graph (Eq. 10/12, Table 2, on the pooled
    (N, C, T) tensors): :class:`_Pools` (X -> pools) and :class:`PooledRescale` (X, scale -> out).
    The rescale's backward reads grad_out and the saved output once for ``d scale`` (a per-row dot
    product) and leaves the gradient of X to the pools' backward, which writes it once as
    ``grad_out * s + d avg / HW`` and adds ``d max`` at the max positions.
    """
    link = _Link(x.dtype in _TRITON_DTYPES and cgd_triton.available(x))
    pools = _Pools.apply(x, module._need_max, link)
    avg, mx = pools if module._need_max else (pools, None)
    scale = module._to_scale(module._descriptor(module._arrange(avg, mx), params), x.shape, x.dtype)
    return PooledRescale.apply(x, scale, link)


class _Pools(torch.autograd.Function):
    """Spatial average (and max) of X as (N, C, T); its backward is the whole gradient of X."""

    @staticmethod
    def forward(ctx, x: Tensor, need_max: bool, link: _Link):
        if link.triton:
            avg, mx = cgd_triton.pool_stats(x, need_max)
        else:
            avg, mx = frame_pools(x, torch.promote_types(x.dtype, torch.float32), need_max)
        ctx.link, link.mx = link, mx
        return (avg, mx) if need_max else avg

    @staticmethod
    @once_differentiable
    def backward(ctx, d_avg: Tensor, d_max: Tensor | None = None):
        link = ctx.link
        grad, out, s = link.grad, link.out, link.s
        link.grad = link.out = None  # a second backward (retain_graph) sets them again
        shift = d_avg / (out.shape[3] * out.shape[4])
        if link.fused:
            d = None if link.m_ref is None else d_max.float() / link.cnt
            return cgd_triton.backward_apply(grad, out, s[..., 0, 0].float(), shift.float(), link.m_ref, d), None, None
        grad_x = _affine(grad, s, shift.to(out.dtype)[..., None, None])
        if d_max is not None:
            grad_x = _add_max_grad(grad_x, out, d_max)
        return grad_x, None, None


class PooledRescale(torch.autograd.Function):
    """``out = X * scale`` keeping only ``out`` (and the tiny scale) for its backward (Eq. 11)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, link: _Link) -> Tensor:
        out = x * scale
        ctx.link = link
        ctx.save_for_backward(out, scale)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        out, s = ctx.saved_tensors  # s: (N, C, T', 1, 1) in out's dtype
        link = ctx.link
        fused = link.fused = link.triton and cgd_triton.available(grad)
        # max(X) * s rounded as the forward's product rounded it: where out equals it, X had its max
        link.m_ref = (link.mx.to(out.dtype)[..., None, None] * s)[..., 0, 0] if fused and link.mx is not None else None
        dot, link.cnt = cgd_triton.backward_rows(grad, out, link.m_ref) if fused else (_dot_hw(grad, out), None)
        if s.shape[2] == 1:
            dot = dot.sum(2, keepdim=True)
        link.grad, link.out, link.s = grad, out, s
        return None, (dot.to(s.dtype) / s[..., 0, 0])[..., None, None], None  # d scale = sum_hw(grad * X)


_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

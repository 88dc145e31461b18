"""Triton kernels for CGD's passes over X on CUDA: one kernel each for the pooled statistics, the backward's
per-row reductions and the backward's gradient write (cf. :mod:`cgd_video.models.cgd_kernels`).

On a GPU the per-module cost of the eager path is kernel launches: ``mean`` + ``amax`` (+ casts) in the
forward, and ``vecdot``, ``addcmul``, ``eq``, ``sum``, a masked ``add_`` in the backward. Here:

* :func:`pool_stats`: spatial mean and max of every (sample, channel, frame) row in one read of X
  (float32 accumulation), for any layout whose H, W merge into one strided dim (contiguous clips,
  channels_last_3d, the clip view of a channels_last frame batch);
* :func:`backward_rows`: ``sum_hw(grad * out)`` and the number of spatial maxima (``out == m``) per row
  in one read of grad and out;
* :func:`backward_apply`: ``grad_x = grad * s + shift + [out == m] * d_max / count`` in one pass.

Every (N, C, T) row is addressed as ``n*sN + c*sC + t*sT + l*sL`` with ``l = h*W + w``; a program owns
one (n, t) and a block of channels and walks l in tiles, so loads are coalesced along C for
channels-innermost layouts and along l for contiguous ones. The kernels are plain Triton and run on
CPU tensors under ``TRITON_INTERPRET=1`` (how tests/test_cgd_triton.py checks their numerics here).
:func:`available` says whether a tensor can take this path; otherwise the eager ops are used.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

try:  # triton ships with the CUDA builds of torch; CPU-only installs fall back to the eager ops
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

__all__ = ["available", "pool_stats", "backward_rows", "backward_apply"]

BLOCK_C, BLOCK_L = 32, 32


def _strides(x: Tensor) -> tuple[int, int, int, int] | None:
    """(sN, sC, sT, sL) when H and W of x (N, C, T, H, W) merge into one dim l = h*W + w, else None."""
    sn, sc, st, sh, sw = x.stride()
    if x.shape[3] > 1 and sh != x.shape[4] * sw:
        return None
    return sn, sc, st, sw


def available(*tensors: Tensor) -> bool:
    """True when triton is importable, the tensors are on a GPU (or interpreted) and their H, W merge."""
    if triton is None:
        return False
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    return all((t.is_cuda or interpreted) and _strides(t) is not None for t in tensors)


if triton is not None:

    @triton.jit
    def _pool_kernel(x_ptr, avg_ptr, max_ptr, C, T, L, sn, sc, st, sl, inv_l,
                     NEED_MAX: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr):
        nt = tl.program_id(0)
        n, t = nt // T, nt % T
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = c < C
        base = x_ptr + n.to(tl.int64) * sn + t.to(tl.int64) * st + c[:, None].to(tl.int64) * sc
        acc = tl.zeros((BC, BL), dtype=tl.float32)
        mx = tl.full((BC, BL), float("-inf"), dtype=tl.float32)
        for l0 in range(0, L, BL):
            l = l0 + tl.arange(0, BL)
            m = cmask[:, None] & (l[None, :] < L)
            v = tl.load(base + l[None, :].to(tl.int64) * sl, mask=m, other=0.0).to(tl.float32)
            acc += v
            if NEED_MAX:
                mx = tl.maximum(mx, tl.where(m, v, float("-inf")))
        out = (n * C + c) * T + t  # (N, C, T) contiguous
        tl.store(avg_ptr + out, tl.sum(acc, axis=1) * inv_l, mask=cmask)
        if NEED_MAX:
            tl.store(max_ptr + out, tl.max(mx, axis=1), mask=cmask)

    @triton.jit
    def _rows_kernel(g_ptr, o_ptr, m_ptr, dot_ptr, cnt_ptr, C, T, L,
                     gn, gc, gt, gl, on, oc, ot, ol,
                     NEED_MAX: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr):
        nt = tl.program_id(0)
        n, t = nt // T, nt % T
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = c < C
        row = (n * C + c) * T + t
        n64, t64, c64 = n.to(tl.int64), t.to(tl.int64), c[:, None].to(tl.int64)
        gbase = g_ptr + n64 * gn + t64 * gt + c64 * gc
        obase = o_ptr + n64 * on + t64 * ot + c64 * oc
        if NEED_MAX:
            mref = tl.load(m_ptr + row, mask=cmask, other=0.0)
        dot = tl.zeros((BC, BL), dtype=tl.float32)
        cnt = tl.zeros((BC, BL), dtype=tl.float32)
        for l0 in range(0, L, BL):
            l = (l0 + tl.arange(0, BL))[None, :].to(tl.int64)
            m = cmask[:, None] & (l < L)
            o = tl.load(obase + l * ol, mask=m, other=0.0)
            g = tl.load(gbase + l * gl, mask=m, other=0.0).to(tl.float32)
            dot += g * o.to(tl.float32)
            if NEED_MAX:
                cnt += tl.where(m & (o == mref[:, None]), 1.0, 0.0)
        tl.store(dot_ptr + row, tl.sum(dot, axis=1), mask=cmask)
        if NEED_MAX:
            tl.store(cnt_ptr + row, tl.sum(cnt, axis=1), mask=cmask)

    @triton.jit
    def _apply_kernel(g_ptr, o_ptr, x_ptr, s_ptr, b_ptr, m_ptr, d_ptr, C, T, L,
                      gn, gc, gt, gl, on, oc, ot, ol, xn, xc, xt, xl,
                      NEED_MAX: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr):
        nt = tl.program_id(0)
        n, t = nt // T, nt % T
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = c < C
        row = (n * C + c) * T + t
        n64, t64, c64 = n.to(tl.int64), t.to(tl.int64), c[:, None].to(tl.int64)
        s = tl.load(s_ptr + row, mask=cmask, other=0.0)[:, None]
        b = tl.load(b_ptr + row, mask=cmask, other=0.0)[:, None]
        if NEED_MAX:
            mref = tl.load(m_ptr + row, mask=cmask, other=0.0)[:, None]
            dmax = tl.load(d_ptr + row, mask=cmask, other=0.0)[:, None]
        for l0 in range(0, L, BL):
            l = (l0 + tl.arange(0, BL))[None, :].to(tl.int64)
            m = cmask[:, None] & (l < L)
            g = tl.load(g_ptr + n64 * gn + t64 * gt + c64 * gc + l * gl, mask=m, other=0.0).to(tl.float32)
            v = g * s + b
            if NEED_MAX:
                o = tl.load(o_ptr + n64 * on + t64 * ot + c64 * oc + l * ol, mask=m, other=0.0)
                v += tl.where(o == mref, dmax, 0.0)
            xp = x_ptr + n64 * xn + t64 * xt + c64 * xc + l * xl
            tl.store(xp, v.to(x_ptr.dtype.element_ty), mask=m)


def _grid(x: Tensor) -> tuple[int, int]:
    n, c, t = x.shape[:3]
    return (n * t, (c + BLOCK_C - 1) // BLOCK_C)


def pool_stats(x: Tensor, need_max: bool) -> tuple[Tensor, Tensor | None]:
    """Spatial mean and max of x (N, C, T, H, W) as float32 (N, C, T) tensors, one read of x."""
    n, c, t, h, w = x.shape
    avg = torch.empty((n, c, t), device=x.device, dtype=torch.float32)
    mx = torch.empty_like(avg) if need_max else avg
    _pool_kernel[_grid(x)](x, avg, mx, c, t, h * w, *_strides(x), 1.0 / (h * w),
                           NEED_MAX=need_max, BC=BLOCK_C, BL=BLOCK_L)
    return avg, (mx if need_max else None)


def backward_rows(grad: Tensor, out: Tensor, m_ref: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Per row of (N, C, T): ``sum_hw(grad * out)`` and (if ``m_ref``) how many ``out == m_ref``; float32."""
    n, c, t, h, w = out.shape
    dot = torch.empty((n, c, t), device=out.device, dtype=torch.float32)
    cnt = torch.empty_like(dot) if m_ref is not None else dot
    m = m_ref.contiguous() if m_ref is not None else dot
    _rows_kernel[_grid(out)](grad, out, m, dot, cnt, c, t, h * w, *_strides(grad), *_strides(out),
                             NEED_MAX=m_ref is not None, BC=BLOCK_C, BL=BLOCK_L)
    return dot, (cnt if m_ref is not None else None)


def backward_apply(grad: Tensor, out: Tensor, s: Tensor, shift: Tensor, m_ref: Tensor | None,
                   d_max: Tensor | None) -> Tensor:
    """``grad * s + shift`` (+ ``d_max`` where ``out == m_ref``) in out's layout and dtype, one pass.

    ``s``, ``shift``, ``d_max``: float32, broadcastable to (N, C, T); ``m_ref``: (N, C, T) in out's dtype.
    """
    n, c, t, h, w = out.shape
    gx = torch.empty_like(out)  # same strides as out (dense)
    rows = (n, c, t)
    s, shift = s.expand(rows).contiguous(), shift.expand(rows).contiguous()
    need_max = m_ref is not None
    m = m_ref.contiguous() if need_max else s
    d = d_max.expand(rows).contiguous() if need_max else s
    _apply_kernel[_grid(out)](grad, out, gx, s, shift, m, d, c, t, h * w,
                              *_strides(grad), *_strides(out), *_strides(gx),
                              NEED_MAX=need_max, BC=BLOCK_C, BL=BLOCK_L)
    return gx

"""Compact Global Descriptor (CGD) for video feature maps.

He et al., "Compact Global Descriptor for Neural Networks" (arXiv 1907.09665):

* Eq. 10: ``z = g(X) f(X)^T w`` with g, f global poolings of X (average, max, softmax-wrapped).
  The outer product ``g f^T`` is never formed: the scalar ``s = f . w`` is computed first (O(D)),
  then ``z = g * s`` (the paragraph after Eq. 11).
* Eq. 11: ``X_hat = X * (1 + tanh(z + b))`` broadcast over space; with w = b = 0 the module is the
  identity.
* Eq. 12: the weight-shared video form ``z = sum_t g(X_t) f(X_t)^T w`` (``temporal="shared"``).
* Table 2: the ten (g, f) choices v1..v7 (single stage) and the cascades v8..v10, where two
  first-level stages feed a final stage (v10, the paper's choice: final(v3 out, v6 out)).
* Fig. 4(a): frames concatenated along channels, D = C*T (``temporal="concat"``).

Exact conventions (frame-major concat index ``t*C + c``, softmax domains, the "mean" and "frame"
modes) are those of PROTOCOL.md section 1 and 3.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cgd_video.models import cgd_native
from cgd_video.models.cgd_descriptor import DescriptorPlan, descriptor_forward, stage
from cgd_video.models.cgd_kernels import CGDFunction, frame_pools, positive_scale, temporal_mean_rows

__all__ = ["CGD", "CGDStage", "VARIANTS", "TEMPORAL_MODES", "INITS"]

# Table 2, single-stage variants: (g source, f source). "a" = spatial average pool, "m" = spatial
# max pool, "sa"/"sm" = softmax over the D descriptor entries of a/m.
_SINGLE: dict[str, tuple[str, str]] = {
    "v1": ("a", "a"),
    "v2": ("a", "sa"),
    "v3": ("sa", "a"),
    "v4": ("a", "m"),
    "v5": ("m", "a"),
    "v6": ("sa", "m"),
    "v7": ("sm", "a"),
}
# Table 2, cascades: final(g = output of first variant, f = output of second variant).
_CASCADE: dict[str, tuple[str, str]] = {
    "v8": ("v3", "v7"),
    "v9": ("v1", "v7"),
    "v10": ("v3", "v6"),
}
VARIANTS: tuple[str, ...] = tuple(_SINGLE) + tuple(_CASCADE)
TEMPORAL_MODES: tuple[str, ...] = ("concat", "shared", "mean", "frame")
INITS: tuple[str, ...] = ("xavier", "zeros")
# Modes whose descriptor has one entry per frame (scale shape (N, C, T, 1, 1)); others give T = 1.
_PER_FRAME_OUTPUT = frozenset({"concat", "frame"})


def _check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"cgd_video/models/cgd.py: unknown CGD {kind} {value!r}; valid: {', '.join(valid)}")


def _descriptor_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 inputs (autocast), the input dtype otherwise (float64 for gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


class CGDStage(nn.Module):
    """One stage of Eq. 10/11: maps descriptors (g, f) of dimension D to ``tanh(g * (f . w) + b)``.

    Holds ``weight`` (w) and ``bias`` (b), both of shape [D]: 2*D parameters.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def reset_parameters(self, init: str = "xavier") -> None:
        """xavier: w drawn as a (D, 1) tensor with Xavier-uniform, U(+-sqrt(6/(D+1))); zeros: w = 0.

        b = 0 in both cases (the authors' code).
        """
        _check_choice("init", init, INITS)
        with torch.no_grad():
            if init == "xavier":
                w = torch.empty(self.dim, 1, device=self.weight.device, dtype=self.weight.dtype)
                nn.init.xavier_uniform_(w)
                self.weight.copy_(w.view(self.dim))
            else:
                self.weight.zero_()
            self.bias.zero_()

    def forward(self, g: Tensor, f: Tensor, sum_over_time: bool = False) -> Tensor:
        return stage(g, f, self.weight.to(g.dtype), self.bias.to(g.dtype), sum_over_time)[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class CGD(nn.Module):
    """Compact Global Descriptor on (N, C, T, H, W) features: ``X * (1 + y)`` (Eq. 11, Table 2)."""

    def __init__(
        self,
        channels: int,
        variant: str = "v10",
        temporal: str = "shared",
        num_frames: int | None = None,
        init: str = "xavier",
    ) -> None:
        """Build a CGD module.

        Args:
            channels: C, the channel count of the (N, C, T, H, W) input.
            variant: Table 2 sub-descriptor choice. ``v1``..``v7`` are single stages with
                (g, f) = v1 (a, a), v2 (a, softmax(a)), v3 (softmax(a), a), v4 (a, m), v5 (m, a),
                v6 (softmax(a), m), v7 (softmax(m), a), where a / m are spatial average / max
                pools. ``v8`` = final(v3, v7), ``v9`` = final(v1, v7), ``v10`` = final(v3, v6) are
                cascades of three stages (two first-level stages feeding a final one); v10 is
                the paper's choice.
            temporal: how time enters the descriptor.
                ``concat`` (Fig. 4a): frames concatenated along channels, D = C*T, entry index
                ``t*C + c``, softmax over all C*T entries, one output per (channel, frame);
                needs ``num_frames``.
                ``shared`` (Eq. 12): D = C, w shared over time, per-frame terms
                ``g(X_t) (f(X_t) . w)`` summed before the tanh (softmax over C within each frame);
                one output per channel for all frames.
                ``mean``: features averaged over T first, then pooled; one output per channel.
                ``frame``: the image module applied to every frame on its own (w shared, softmax
                over C per frame); one output per (channel, frame).
            num_frames: T at this stage; required for ``concat`` (the input T must match),
                ignored otherwise.
            init: ``xavier`` (each w drawn as a (D, 1) tensor with Xavier-uniform, b = 0, as the
                authors' code) or ``zeros`` (w = b = 0: the module starts as the identity).

        ``self.stages`` holds the stages in order (first-level stages, then the final one), each
        with ``weight`` and ``bias`` of shape [D]: 2*D parameters per stage.
        """
        super().__init__()
        _check_choice("variant", variant, VARIANTS)
        _check_choice("temporal mode", temporal, TEMPORAL_MODES)
        _check_choice("init", init, INITS)
        if channels <= 0:
            raise ValueError(f"cgd_video/models/cgd.py: channels must be positive, got {channels}")
        if temporal == "concat":
            if num_frames is None or int(num_frames) <= 0:
                raise ValueError(
                    "cgd_video/models/cgd.py: temporal='concat' needs num_frames (T at this stage), "
                    f"got {num_frames!r}"
                )
            num_frames = int(num_frames)
        self.channels = channels
        self.variant = variant
        self.temporal = temporal
        self.num_frames = num_frames
        self.init = init
        self.dim = channels * num_frames if temporal == "concat" else channels
        self.cascaded = variant in _CASCADE
        # Descriptor roles, fixed at construction so forward has no branching on data.
        first = [_SINGLE[v] for v in _CASCADE[variant]] if self.cascaded else [_SINGLE[variant]]
        g_keys, f_keys = tuple(g for g, _ in first), tuple(f for _, f in first)
        keys = set(g_keys + f_keys)
        self._need_max = bool(keys & {"m", "sm"})
        self.plan = DescriptorPlan(g_keys, f_keys, tuple(sorted(k for k in keys if k.startswith("s"))),
                                   sum_first_level=temporal == "shared")
        self.stages = nn.ModuleList(CGDStage(self.dim) for _ in range(3 if self.cascaded else 1))
        self._native = cgd_native.serves(variant, temporal)  # v10 shared/mean: the C++ op on the CPU (CGD_VIDEO_NATIVE=0: off)
        self.reset_parameters(init)

    def reset_parameters(self, init: str | None = None) -> None:
        for cgd_stage in self.stages:
            cgd_stage.reset_parameters(self.init if init is None else init)

    def extra_repr(self) -> str:
        frames = f", num_frames={self.num_frames}" if self.temporal == "concat" else ""
        return f"{self.channels}, variant={self.variant!r}, temporal={self.temporal!r}{frames}, dim={self.dim}"

    # -- descriptor ------------------------------------------------------------------------------
    def _pool(self, x: Tensor, dtype: torch.dtype) -> dict[str, Tensor]:
        """Pooled descriptors as (N, T', D) in ``dtype``: average (and max if needed), pooled once."""
        if self.temporal == "mean":
            xm = temporal_mean_rows(x, dtype)  # (N, C, H*W)
            return self._arrange(xm.mean(-1), xm.amax(-1) if self._need_max else None)
        return self._arrange(*frame_pools(x, dtype, self._need_max))

    def _arrange(self, avg: Tensor, mx: Tensor | None) -> dict[str, Tensor]:
        """Pools -> descriptors (N, T', D) of the temporal mode: (N, C) for ``mean``, else (N, C, T)."""
        pools = {"a": avg} if mx is None else {"a": avg, "m": mx}
        if self.temporal == "mean":  # (N, 1, C)
            return {k: v.unsqueeze(1) for k, v in pools.items()}
        n, c, t = avg.shape
        if self.temporal == "concat":  # frame-major entries t*C + c
            return {k: v.transpose(1, 2).reshape(n, 1, t * c) for k, v in pools.items()}
        return {k: v.transpose(1, 2) for k, v in pools.items()}  # shared / frame: (N, T, C)

    def _unarrange(self, d_pools: dict[str, Tensor], x_shape: torch.Size) -> tuple[Tensor, Tensor | None]:
        """Gradients of :meth:`_arrange`'s descriptors back to its (avg, max) inputs."""
        n, c, t = x_shape[:3]
        if self.temporal == "mean":
            back = [d[:, 0] for d in (d_pools["a"], d_pools.get("m")) if d is not None]
        elif self.temporal == "concat":
            back = [d.reshape(n, t, c).transpose(1, 2) for d in (d_pools["a"], d_pools.get("m")) if d is not None]
        else:
            back = [d.transpose(1, 2) for d in (d_pools["a"], d_pools.get("m")) if d is not None]
        return back[0], (back[1] if len(back) > 1 else None)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.channels:
            raise ValueError(
                f"cgd_video/models/cgd.py: CGD({self.channels}) expects (N, {self.channels}, T, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if self.temporal == "concat" and x.shape[2] != self.num_frames:
            raise ValueError(
                f"cgd_video/models/cgd.py: CGD(temporal='concat') expected T={self.num_frames} frames, "
                f"received T={x.shape[2]} (input shape {tuple(x.shape)})"
            )

    def descriptor(self, x: Tensor) -> Tensor:
        """The last stage's output y as (N, T', D) in float32 (float64 for float64 inputs)."""
        if not torch.jit.is_tracing():  # host-side shape checks; a traced graph keeps N, T, H, W dynamic
            self._check_input(x)
        # Eq. 10/12 and the Table 2 cascades on the pooled descriptors
        return descriptor_forward(self.plan, self._pool(x, _descriptor_dtype(x.dtype)), self._params())[0]

    def _params(self) -> list[Tensor]:
        """[w0, b0, w1, b1, ...] in stage order (the tensors the descriptor is differentiated by)."""
        return [p for cgd_stage in self.stages for p in (cgd_stage.weight, cgd_stage.bias)]

    def _scale_rows(self, y: Tensor, x_shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """Descriptor y (N, T', D) -> ``1 + y`` as (N, C, T or 1) in ``dtype``."""
        n, c, t = x_shape[:3]
        t_out = t if self.temporal in _PER_FRAME_OUTPUT else 1
        s = positive_scale(y.reshape(n, t_out, c).transpose(1, 2))
        return s if s.dtype == dtype else s.to(dtype)

    def scale(self, x: Tensor) -> Tensor:
        """``1 + y`` as (N, C, T or 1, 1, 1) in x's dtype, so that ``forward(x) == x * scale(x)``.
        Without autograd (evaluation, inference), v10 shared/mean on the CPU takes the native op's scale."""
        if self._native and _eager(x):
            params = self._params()
            if not _needs_grad(x, params) and cgd_native.applies(x, params):
                self._check_input(x)
                return cgd_native.cgd_v10_scale(x, params, self.temporal == "mean")
        return self._scale_rows(self.descriptor(x), x.shape, x.dtype)[..., None, None]

    def forward(self, x: Tensor) -> Tensor:
        params = self._params()
        if _needs_grad(x, params) and _eager(x):
            self._check_input(x)
            if self._native and cgd_native.applies(x, params):  # v10 shared/mean on CPU: the module in C++
                return cgd_native.cgd_v10(x, params, self.temporal == "mean")
            return CGDFunction.apply(x, self, *params)  # one autograd node (cgd_kernels.py)
        return x * self.scale(x)


def _needs_grad(x: Tensor, params: list[Tensor]) -> bool:
    """Autograd will record this module's forward."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


def _eager(x: Tensor) -> bool:
    """Eager autograd: traced/scripted/compiled graphs see the plain ops, not the custom Function."""
    return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling())


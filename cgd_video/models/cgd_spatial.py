"""Height-wise and width-wise Compact Global Descriptors (paper Fig. 4(b), 4(c), Sec. 3.2).

:class:`CGDSpatial` (``cgd_height`` / ``cgd_width``): the descriptor's entries are rows (or columns)
instead of channels. For the height-wise form each entry (t, h) pools ``X[:, :, t, h, :]`` over
channels and width, giving ``z' in R^{HT}`` (``concat``, entry index ``t*H + h``) or ``R^H`` with
Eq. 12's per-frame sum (``shared``). The channel form's recurrence (Eq. 10-11, every Table 2
variant, the final stage *with* its tanh) then rescales every row on its own:
``X[:, :, t, h, :] * (1 + y[t*H + h])``. It is implemented by swapping the axis of interest into the
channel slot (a view) and reusing :class:`~cgd_video.models.cgd.CGD`, so all variants and temporal
modes behave as for channels. Its scale (N, 1, T or 1, H, 1) folds into the next BN (Sec. 3.3).

:class:`CGDSpatialOuter` (``cgd_hw``): the authors' released ``SpatialAttentionLayer``
(``CGD_spatial_attention.py`` of HolmesShuan/Compact-Global-Descriptor), which differs from Fig.
4(b)/(c) and from :class:`CGDSpatial` in exactly two ways:

1. its height and width descriptors are v10 cascades whose *final stage has no tanh*:
   ``y = psi * (phi . w2) + b2`` with ``psi = tanh(softmax(a) (a . w0) + b0)``,
   ``phi = tanh(softmax(a) (m . w1) + b1)``, a / m the mean / max over channels and the other axis;
2. the two axes are combined into one map, ``X * (1 + tanh(outer(y_h, y_w)))``: a per-(row, column)
   scale rather than two separable per-row and per-column ones.

Their layer is 2-D (images); here it runs on every frame on its own with shared weights (the
``frame`` mode). Its scale is as large as a feature map per channel-free frame (N, 1, T, H, W), so it
is not folded into the BN (folding would write a full-size multiplier); the block applies it as
``X * s`` and then BN. (The authors' ``AttentionLayer`` keeps the spatial call commented out: the
released models use the channel form only.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cgd import CGD, CGDStage, _descriptor_dtype
from .cgd_descriptor import stage

__all__ = ["CGDSpatial", "CGDSpatialOuter", "AXES"]

# axis name -> dimension of (N, C, T, H, W)
AXES: dict[str, int] = {"height": 3, "width": 4}


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"cgd_video/models/cgd_spatial.py: unknown axis {axis!r}; valid: {', '.join(AXES)}")


class CGDSpatial(nn.Module):
    """CGD along height (Fig. 4b) or width (Fig. 4c) of (N, C, T, H, W) features."""

    def __init__(
        self,
        size: int,
        axis: str = "height",
        variant: str = "v10",
        temporal: str = "concat",
        num_frames: int | None = None,
        init: str = "xavier",
    ) -> None:
        """Build a spatial CGD.

        Args:
            size: H (``axis="height"``) or W (``axis="width"``) of the input at this layer; in a
                :class:`~cgd_video.models.resnet_c2d.C2DResNet` it is derived from ``input_size``.
            axis: ``height`` (one descriptor entry per row) or ``width`` (per column).
            variant, temporal, num_frames, init: as for :class:`~cgd_video.models.cgd.CGD`, with
                "channel" read as "row"/"column": ``concat`` gives D = size*T (Fig. 4b/c),
                ``shared`` D = size with per-frame terms summed (Eq. 12), ``mean`` averages over
                T first, ``frame`` treats every frame on its own.
        """
        super().__init__()
        _check_axis(axis)
        self.axis = axis
        self.size = size
        self._dim = AXES[axis]
        self.cgd = CGD(size, variant=variant, temporal=temporal, num_frames=num_frames, init=init)

    @property
    def stages(self) -> nn.ModuleList:
        """The stages (``weight``, ``bias`` of shape [D]) of the underlying descriptor."""
        return self.cgd.stages

    def extra_repr(self) -> str:
        return f"axis={self.axis!r}, size={self.size}"

    def _check(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[self._dim] != self.size:
            raise ValueError(
                f"cgd_video/models/cgd_spatial.py: CGDSpatial(axis={self.axis!r}, size={self.size}) "
                f"expects (N, C, T, H, W) with {self.axis} {self.size}, got shape {tuple(x.shape)} "
                "(a model with spatial CGD runs only at the crop size it was built for)"
            )

    def scale(self, x: Tensor) -> Tensor:
        """``1 + y`` as (N, 1, T or 1, H, 1) (height) or (N, 1, T or 1, 1, W) (width), x's dtype."""
        self._check(x)
        return self.cgd.scale(x.transpose(1, self._dim)).transpose(1, self._dim)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale(x)


class CGDSpatialOuter(nn.Module):
    """The authors' spatial layer: ``X * (1 + tanh(outer(y_h, y_w)))`` per frame (module docstring)."""

    def __init__(self, height: int, width: int, init: str = "xavier") -> None:
        """Build the layer for (N, C, T, height, width) inputs.

        Args:
            height, width: the feature size at this layer (the authors' ``spatial_size`` for both).
            init: ``xavier`` (each w a (D, 1) Xavier-uniform draw, b = 0, as the authors' code) or
                ``zeros`` (w = b = 0; y_h = y_w = 0, so the layer starts as the identity).
        """
        super().__init__()
        self.height, self.width = height, width
        self.height_stages = nn.ModuleList(CGDStage(height) for _ in range(3))
        self.width_stages = nn.ModuleList(CGDStage(width) for _ in range(3))
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for stage in (*self.height_stages, *self.width_stages):
            stage.reset_parameters(self.init)

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}"

    @staticmethod
    def _axis_descriptor(avg: Tensor, mx: Tensor, stages: nn.ModuleList) -> Tensor:
        """v10 with a linear last stage on (N, T, D) pools: ``psi * (phi . w2) + b2``."""
        (w0, b0), (w1, b1), (w2, b2) = ((s.weight.to(avg.dtype), s.bias.to(avg.dtype)) for s in stages)
        soft = F.softmax(avg, dim=-1)
        psi = stage(soft, avg, w0, b0, False)[0]
        phi = stage(soft, mx, w1, b1, False)[0]
        return torch.addcmul(b2, psi, (phi * w2).sum(-1, keepdim=True))

    def spatial_map(self, x: Tensor) -> Tensor:
        """``1 + tanh(outer(y_h, y_w))`` as (N, 1, T, H, W) in x's dtype (not called ``scale``: never folded)."""
        if x.dim() != 5 or x.shape[3:] != (self.height, self.width):
            raise ValueError(
                f"cgd_video/models/cgd_spatial.py: CGDSpatialOuter({self.height}, {self.width}) expects "
                f"(N, C, T, {self.height}, {self.width}), got shape {tuple(x.shape)}"
            )
        dtype = _descriptor_dtype(x.dtype)
        mean_c, max_c = x.mean(1, dtype=dtype), x.amax(1).to(dtype)  # (N, T, H, W)
        y_h = self._axis_descriptor(mean_c.mean(3), max_c.amax(3), self.height_stages)  # (N, T, H)
        y_w = self._axis_descriptor(mean_c.mean(2), max_c.amax(2), self.width_stages)  # (N, T, W)
        return (1.0 + torch.tanh(y_h.unsqueeze(-1) * y_w.unsqueeze(-2))).unsqueeze(1).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.spatial_map(x)

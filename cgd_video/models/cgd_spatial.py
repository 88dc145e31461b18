"""Height-wise and width-wise Compact Global Descriptors (paper Fig. 4(b), 4(c), Sec. 3.2).

The descriptor's entries are rows (or columns) instead of channels: for the height-wise form each
entry (t, h) pools X[:, t, h, :] over channels and width, giving ``z' in R^{HT}`` (``concat``,
entry index ``t*H + h``) or ``R^H`` with Eq. 12's per-frame sum (``shared``). The same stage
recurrence as the channel form (Eq. 10-11, Table 2 variants) then rescales every row:
``X[:, :, t, h, :] * (1 + y[t*H + h])``. The authors' spatial layer applies the same recurrence.

Implemented by swapping the axis of interest into the channel slot (a view) and reusing
:class:`~cgd_video.models.cgd.CGD`, so all variants and temporal modes behave identically.
"""
from __future__ import annotations

from torch import Tensor, nn

from .cgd import CGD

__all__ = ["CGDSpatial", "AXES"]

# axis name -> dimension of (N, C, T, H, W)
AXES: dict[str, int] = {"height": 3, "width": 4}


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
            size: H (``axis="height"``) or W (``axis="width"``) of the input at this stage.
            axis: ``height`` (one descriptor entry per row) or ``width`` (per column).
            variant, temporal, num_frames, init: as for :class:`~cgd_video.models.cgd.CGD`, with
                "channel" read as "row"/"column": ``concat`` gives D = size*T (Fig. 4b/c),
                ``shared`` D = size with per-frame terms summed (Eq. 12), ``mean`` averages over
                T first, ``frame`` treats every frame on its own.
        """
        super().__init__()
        if axis not in AXES:
            raise ValueError(
                f"cgd_video/models/cgd_spatial.py: unknown axis {axis!r}; valid: {', '.join(AXES)}"
            )
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

    def scale(self, x: Tensor) -> Tensor:
        """``1 + y`` as (N, 1, T or 1, H, 1) (height) or (N, 1, T or 1, 1, W) (width), x's dtype."""
        if x.dim() != 5 or x.shape[self._dim] != self.size:
            raise ValueError(
                f"cgd_video/models/cgd_spatial.py: CGDSpatial(axis={self.axis!r}, size={self.size}) "
                f"expects (N, C, T, H, W) with {self.axis} {self.size}, got shape {tuple(x.shape)}"
            )
        return self.cgd.scale(x.transpose(1, self._dim)).transpose(1, self._dim)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale(x)

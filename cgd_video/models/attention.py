"""Attention-layer factory for the C2D bottleneck (timm ``create_attn`` style).

``create_attention("cgd", C, variant="v10", temporal="shared", num_frames=T, init="xavier")``
builds a :class:`~cgd_video.models.cgd.CGD` (Eq. 10-12, Table 2); ``"none"`` returns ``None``
so the block skips the layer. ``"cgd_height"`` / ``"cgd_width"`` build the spatial forms of
Fig. 4(b)/(c) (:class:`~cgd_video.models.cgd_spatial.CGDSpatial`) and need the feature height or
width at the layer: ``height=H`` / ``width=W`` (what the backbone passes every factory, derived
from its layout) or ``size=``. ``"cgd_hw"`` is the authors' released spatial layer
(:class:`~cgd_video.models.cgd_spatial.CGDSpatialOuter`, ``tanh(outer(h, w))``), which needs both.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from .cgd import CGD
from .cgd_spatial import CGDSpatial, CGDSpatialOuter


def _no_attention(channels: int, **kwargs) -> None:
    return None


def _channel(channels: int, *, height: int | None = None, width: int | None = None, **kwargs) -> CGD:
    """Fig. 2 / 4(a): one entry per channel; the feature size is not needed."""
    return CGD(channels, **kwargs)


def _spatial(channels: int, *, axis: str, height: int | None = None, width: int | None = None,
             size: int | None = None, **kwargs) -> CGDSpatial:
    """Fig. 4(b)/(c): ``size`` or the ``height``/``width`` at this layer; ``channels`` is not used."""
    size = size if size is not None else (height if axis == "height" else width)
    if size is None:
        raise ValueError(f"cgd_video/models/attention.py: cgd_{axis} needs size= (or {axis}=) at its layer")
    return CGDSpatial(size, axis=axis, **kwargs)


def _outer(channels: int, *, height: int | None = None, width: int | None = None, num_frames: int | None = None,
           variant: str = "v10", temporal: str = "frame", init: str = "xavier") -> CGDSpatialOuter:
    """The authors' spatial layer (v10, every frame on its own): needs ``height`` and ``width``."""
    if height is None or width is None:
        raise ValueError("cgd_video/models/attention.py: cgd_hw needs height= and width= at its layer")
    if (variant, temporal) != ("v10", "frame"):
        raise ValueError(
            "cgd_video/models/attention.py: cgd_hw is the authors' v10 spatial layer applied per frame; "
            f"it takes variant='v10', temporal='frame', got {variant!r}, {temporal!r}"
        )
    return CGDSpatialOuter(height, width, init=init)


_ATTENTION: dict[str, Callable[..., nn.Module | None]] = {
    "none": _no_attention,
    "cgd": _channel,
    "cgd_height": partial(_spatial, axis="height"),
    "cgd_width": partial(_spatial, axis="width"),
    "cgd_hw": _outer,
}


def list_attention() -> list[str]:
    """Names accepted by :func:`create_attention`."""
    return sorted(_ATTENTION)


def create_attention(name: str, channels: int, **kwargs) -> nn.Module | None:
    """Build the attention layer ``name`` for ``channels`` channels; ``"none"`` gives ``None``.

    Keyword arguments go to the layer's constructor (for CGD: variant, temporal, num_frames, init);
    ``height`` and ``width`` (the feature size at the layer) are used by the forms that need them.
    """
    try:
        factory = _ATTENTION[name]
    except KeyError:
        raise ValueError(
            f"cgd_video/models/attention.py: unknown attention {name!r}; valid: {', '.join(list_attention())}"
        ) from None
    return factory(channels, **kwargs)

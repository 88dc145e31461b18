"""Attention-layer factory for the C2D bottleneck (timm ``create_attn`` style).

``create_attention("cgd", C, variant="v10", temporal="shared", num_frames=T, init="xavier")``
builds a :class:`~cgd_video.models.cgd.CGD` (Eq. 10-12, Table 2); ``"none"`` returns ``None``
so the block skips the layer. ``"cgd_height"`` / ``"cgd_width"`` build the spatial forms of
Fig. 4(b)/(c) (:class:`~cgd_video.models.cgd_spatial.CGDSpatial`) and need ``size=H`` or ``size=W``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from .cgd import CGD
from .cgd_spatial import CGDSpatial


def _no_attention(channels: int, **kwargs) -> None:
    return None


def _spatial(channels: int, *, axis: str, size: int, **kwargs) -> CGDSpatial:
    """Fig. 4(b)/(c): needs ``size`` (H or W at this stage); ``channels`` is not used."""
    return CGDSpatial(size, axis=axis, **kwargs)


_ATTENTION: dict[str, Callable[..., nn.Module | None]] = {
    "none": _no_attention,
    "cgd": CGD,
    "cgd_height": partial(_spatial, axis="height"),
    "cgd_width": partial(_spatial, axis="width"),
}


def list_attention() -> list[str]:
    """Names accepted by :func:`create_attention`."""
    return sorted(_ATTENTION)


def create_attention(name: str, channels: int, **kwargs) -> nn.Module | None:
    """Build the attention layer ``name`` for ``channels`` channels; ``"none"`` gives ``None``.

    Keyword arguments go to the layer's constructor (for CGD: variant, temporal, num_frames, init).
    """
    try:
        factory = _ATTENTION[name]
    except KeyError:
        raise ValueError(
            f"cgd_video/models/attention.py: unknown attention {name!r}; valid: {', '.join(list_attention())}"
        ) from None
    return factory(channels, **kwargs)

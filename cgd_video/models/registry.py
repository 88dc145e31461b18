"""Model registry (timm ``@register_model`` style): named entry points, built by name.

    >>> from cgd_video.models import create_model, list_models
    >>> model = create_model("c2d_r50_cgd", num_classes=101)

Registering a name twice raises; an unknown name raises a ValueError listing the registered ones.
The entry points themselves live in :mod:`cgd_video.models.presets`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its ``__name__``; a second registration of a name raises."""
    name = fn.__name__
    if name in _MODEL_ENTRYPOINTS:
        raise ValueError(f"model {name!r} is already registered (by {_MODEL_ENTRYPOINTS[name].__module__})")
    _MODEL_ENTRYPOINTS[name] = fn
    return fn


def _ensure_presets() -> None:
    # The presets module registers itself on import; importing here avoids a circular import.
    import cgd_video.models.presets  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a shell-style ``pattern`` (``"*cgd*"``)."""
    _ensure_presets()
    names = sorted(_MODEL_ENTRYPOINTS)
    return fnmatch.filter(names, pattern) if pattern else names


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    _ensure_presets()
    return name in _MODEL_ENTRYPOINTS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` override the preset's defaults."""
    _ensure_presets()
    if name not in _MODEL_ENTRYPOINTS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODEL_ENTRYPOINTS))}")
    return _MODEL_ENTRYPOINTS[name](**kwargs)

"""Named C2D models (Tables 3 and 4 of the CGD paper): thin entry points over one builder.

Every preset accepts keyword overrides of :class:`~cgd_video.models.resnet_c2d.C2DResNet`
(``num_classes``, ``num_frames``, ``layout``, ``attention_kwargs``, ``dropout``, ...).

=====================  ==========================================================
``c2d_r50``            C2D ResNet-50 baseline (Table 3 "ResNet-50")
``c2d_r50_cgd``        + CGD v10 after conv1 of every block (Table 3, "Conv1 + CGD")
``c2d_r50_cgd_conv2``  + CGD after the 3×3 conv (Table 4, "Conv2 + CGD")
``c2d_r50_cgd_concat`` + CGD with frames concatenated, D = C·T (Fig. 4a)
``c2d_r50_cgd_height`` + height-wise CGD, D = H·T (Fig. 4b; built for ``input_size``)
``c2d_r50_cgd_width``  + width-wise CGD, D = W·T (Fig. 4c; built for ``input_size``)
``c2d_r50_cgd_hw``     + the authors' released spatial layer, tanh(outer(h, w)) per frame
``c2d_r50_nl``         + one non-local block in res4 (Table 3 "+NL")
``c2d_r50_nl5``        + five non-local blocks (Non-local paper's res3/res4 setting)
``c2d_r50_cgnl``       + one CGNL block in res4, 8 groups (Table 3 Mini-Kinetics row)
``c2d_r50_cgnl_g1``    + one CGNL block in res4, 1 group (Table 3 UCF-101 row)
=====================  ==========================================================
plus ``c2d_r18``, ``c2d_r34``, ``c2d_r101`` and their ``_cgd`` forms.
"""

from __future__ import annotations

from cgd_video.models.registry import register_model
from cgd_video.models.resnet_c2d import C2DResNet

__all__ = ["preset_kwargs"]

_DESCRIBE = "_describe"  # preset_kwargs' flag: return the preset's own keyword arguments instead of a model


def preset_kwargs(name: str) -> dict:
    """What preset ``name`` fixes: ``depth`` and its defaults (keys it leaves out take C2DResNet's defaults)."""
    from cgd_video.models.registry import create_model

    return create_model(name, **{_DESCRIBE: True})


def _c2d(depth: int, defaults: dict | None = None, **overrides) -> C2DResNet:
    """The one builder: preset defaults, then the caller's overrides (``attention_kwargs`` merged key by key)."""
    if overrides.pop(_DESCRIBE, False):
        return {"depth": depth, **(defaults or {})}
    kwargs = {**(defaults or {}), **overrides}
    if defaults and "attention_kwargs" in defaults and overrides.get("attention_kwargs") is not None:
        kwargs["attention_kwargs"] = {**defaults["attention_kwargs"], **overrides["attention_kwargs"]}
    return C2DResNet(depth=depth, **kwargs)


_CGD = {"attention": "cgd"}


@register_model
def c2d_r18(**kwargs) -> C2DResNet:
    return _c2d(18, **kwargs)


@register_model
def c2d_r18_cgd(**kwargs) -> C2DResNet:
    return _c2d(18, _CGD, **kwargs)


@register_model
def c2d_r34(**kwargs) -> C2DResNet:
    return _c2d(34, **kwargs)


@register_model
def c2d_r34_cgd(**kwargs) -> C2DResNet:
    return _c2d(34, _CGD, **kwargs)


@register_model
def c2d_r50(**kwargs) -> C2DResNet:
    return _c2d(50, **kwargs)


@register_model
def c2d_r50_cgd(**kwargs) -> C2DResNet:
    return _c2d(50, _CGD, **kwargs)


@register_model
def c2d_r50_cgd_conv2(**kwargs) -> C2DResNet:
    return _c2d(50, {**_CGD, "attention_position": "conv2"}, **kwargs)


@register_model
def c2d_r50_cgd_concat(**kwargs) -> C2DResNet:
    return _c2d(50, {**_CGD, "attention_kwargs": {"temporal": "concat"}}, **kwargs)


@register_model
def c2d_r50_cgd_height(**kwargs) -> C2DResNet:
    return _c2d(50, {"attention": "cgd_height", "attention_kwargs": {"temporal": "concat"}}, **kwargs)


@register_model
def c2d_r50_cgd_width(**kwargs) -> C2DResNet:
    return _c2d(50, {"attention": "cgd_width", "attention_kwargs": {"temporal": "concat"}}, **kwargs)


@register_model
def c2d_r50_cgd_hw(**kwargs) -> C2DResNet:
    return _c2d(50, {"attention": "cgd_hw", "attention_kwargs": {"temporal": "frame"}}, **kwargs)


@register_model
def c2d_r50_nl(**kwargs) -> C2DResNet:
    return _c2d(50, {"nonlocal_type": "nl"}, **kwargs)


@register_model
def c2d_r50_nl5(**kwargs) -> C2DResNet:
    return _c2d(50, {"nonlocal_type": "nl", "nonlocal_placement": "nl5"}, **kwargs)


@register_model
def c2d_r50_cgnl(**kwargs) -> C2DResNet:
    return _c2d(50, {"nonlocal_type": "cgnl", "cgnl_groups": 8}, **kwargs)


@register_model
def c2d_r50_cgnl_g1(**kwargs) -> C2DResNet:
    return _c2d(50, {"nonlocal_type": "cgnl", "cgnl_groups": 1}, **kwargs)


@register_model
def c2d_r101(**kwargs) -> C2DResNet:
    return _c2d(101, **kwargs)


@register_model
def c2d_r101_cgd(**kwargs) -> C2DResNet:
    return _c2d(101, _CGD, **kwargs)

"""Config -> model: ``model_kwargs(cfg)``, ``build_model(cfg)``, the eval model of a checkpoint."""

from __future__ import annotations

from typing import Any, Dict

from torch import nn

__all__ = ["GENERIC_MODEL", "model_kwargs", "build_model", "build_model_from_checkpoint"]

GENERIC_MODEL = "c2d_resnet"  # MODEL.NAME that builds C2DResNet directly from the MODEL keys


def model_kwargs(cfg) -> Dict[str, Any]:
    """``C2DResNet`` / ``create_model`` keyword arguments from ``cfg.MODEL`` and ``cfg.DATA.NUM_FRAMES``."""
    m = cfg.MODEL
    kw: Dict[str, Any] = dict(
        num_classes=m.NUM_CLASSES,
        layout=m.LAYOUT,
        num_frames=cfg.DATA.NUM_FRAMES,
        attention=m.ATTENTION,
        attention_position=m.CGD_POSITION,
        nonlocal_type=m.NONLOCAL,
        nonlocal_placement=m.NONLOCAL_PLACEMENT,
        cgnl_groups=m.CGNL_GROUPS,
        dropout=m.DROPOUT,
        zero_init_residual=m.ZERO_INIT_RESIDUAL,
    )
    if m.ATTENTION != "none":
        kw["attention_kwargs"] = dict(variant=m.CGD_VARIANT, temporal=m.CGD_TEMPORAL, init=m.CGD_INIT)
    return kw


def build_model(cfg, load_pretrained: bool = True) -> nn.Module:
    """The model ``cfg`` describes; ImageNet weights from ``MODEL.PRETRAINED`` when set (local file)."""
    from cgd_video.models import C2DResNet, create_model, load_imagenet_weights

    kw = model_kwargs(cfg)
    if cfg.MODEL.NAME == GENERIC_MODEL:
        model = C2DResNet(depth=cfg.MODEL.DEPTH, **kw)
    else:  # a registered preset: its depth is part of its name
        model = create_model(cfg.MODEL.NAME, **kw)
    if load_pretrained and cfg.MODEL.PRETRAINED:
        load_imagenet_weights(model, cfg.MODEL.PRETRAINED)
    return model


def build_model_from_checkpoint(cfg, ckpt: Dict[str, Any], device="cpu", path: str = "checkpoint"):
    """The eval-mode model of a loaded checkpoint (``engine.checkpoint.load_checkpoint``) on ``device``.

    Shared by ``tools/test.py`` and the ``Predictor``: the checkpoint must fit ``cfg``'s model (when it
    carries a fingerprint, differing architecture keys are named), every weight comes from the checkpoint,
    and with ``TEST.FUSE_BN`` eval BatchNorms are folded into their convs (``models/fusion.py``).
    """
    from cgd_video.engine.checkpoint import check_model_compatible

    if "model_fingerprint" in ckpt:
        check_model_compatible(ckpt, cfg, path)
    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    if cfg.TEST.FUSE_BN:
        model.fuse_for_inference()
    return model

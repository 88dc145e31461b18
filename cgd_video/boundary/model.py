"""Config -> model: ``model_kwargs(cfg)``, ``build_model(cfg)``, the checkpoint's model keys, the eval model.

One table (:data:`MODEL_KEYS`) says which config key gives each ``C2DResNet`` keyword argument. With
``MODEL.NAME c2d_resnet`` every key is used as written. With a registered preset (``c2d_r50_cgd``,
``c2d_r50_nl``...) the preset's own choices win over keys left at their default, and a key set to
something else contradicts the preset: a :class:`ModelConfigError` names both (issue 10, defect 1).

``arch_keys(cfg)`` is the resolved architecture as ``{"MODEL.KEY": value}``: stored in checkpoints and
compared by ``tools/test.py``, the Predictor and resume. It is derived from the same table, so a new
architecture key is compared without anyone listing it.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict

from torch import nn

from cgd_video.config import ConfigError

__all__ = ["GENERIC_MODEL", "MODEL_KEYS", "ModelConfigError", "model_kwargs", "arch_keys", "build_model",
           "check_model_compatible", "build_model_from_checkpoint", "pretrained_warning"]

GENERIC_MODEL = "c2d_resnet"  # MODEL.NAME that builds C2DResNet directly from the MODEL keys

# C2DResNet keyword -> config key ("attention_kwargs.x": a key of the attention module's kwargs).
MODEL_KEYS = {
    "depth": "MODEL.DEPTH", "num_classes": "MODEL.NUM_CLASSES", "layout": "MODEL.LAYOUT",
    "num_frames": "DATA.NUM_FRAMES", "attention": "MODEL.ATTENTION", "attention_position": "MODEL.CGD_POSITION",
    "attention_kwargs.variant": "MODEL.CGD_VARIANT", "attention_kwargs.temporal": "MODEL.CGD_TEMPORAL",
    "attention_kwargs.init": "MODEL.CGD_INIT", "nonlocal_type": "MODEL.NONLOCAL",
    "nonlocal_placement": "MODEL.NONLOCAL_PLACEMENT", "cgnl_groups": "MODEL.CGNL_GROUPS",
    "dropout": "MODEL.DROPOUT", "zero_init_residual": "MODEL.ZERO_INIT_RESIDUAL",
    "input_size": "DATA.TRAIN_CROP",
}
_INIT_ONLY = ("dropout", "zero_init_residual", "attention_kwargs.init")  # same parameters whatever their value
# keyword prefix -> whether the model has the module it configures (a keyword of an absent module has no effect)
_ONLY_WITH = {"attention_position": lambda f: f["attention"] != "none",
              "attention_kwargs.": lambda f: f["attention"] != "none",
              "nonlocal_placement": lambda f: f["nonlocal_type"] != "none",
              "cgnl_groups": lambda f: f["nonlocal_type"] == "cgnl"}
UNSET, RANDOM_INIT = "", "none"  # MODEL.PRETRAINED: not chosen (warns) / random init on purpose


class ModelConfigError(ConfigError):
    """MODEL.* keys that contradict each other or the weights file: the message names the keys."""


def _get(cfg, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _flat(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k != "attention_kwargs"}
    out.update({f"attention_kwargs.{k}": v for k, v in (kwargs.get("attention_kwargs") or {}).items()})
    return out


def _constructor_defaults() -> Dict[str, Any]:
    from cgd_video.models import C2DResNet

    params = inspect.signature(C2DResNet.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _resolved(cfg) -> Dict[str, Any]:
    """Flat ``{kwarg: value}``: the config's values, with a preset's own choices applied (checked)."""
    from cgd_video.config import get_cfg_defaults
    from cgd_video.models.presets import preset_kwargs

    flat = {kw: _get(cfg, key) for kw, key in MODEL_KEYS.items()}
    if cfg.MODEL.NAME == GENERIC_MODEL:
        return flat
    try:
        preset = {**_constructor_defaults(), **_flat(preset_kwargs(cfg.MODEL.NAME))}
    except ValueError as e:
        raise ModelConfigError(f"MODEL.NAME: {e}") from None
    preset.pop("attention_kwargs", None)
    choices = {kw: v for kw, v in preset.items()
               if kw in MODEL_KEYS and kw not in ("num_classes", "num_frames", "layout", "dropout", "zero_init_residual",
                                           "input_size")}
    merged = {**flat, **choices}
    defaults = get_cfg_defaults()
    clashes = [f"{kw}={choices[kw]!r} but {MODEL_KEYS[kw]} is {flat[kw]!r}" for kw in _relevant(merged)
               if kw in choices and flat[kw] != choices[kw] and flat[kw] != _get(defaults, MODEL_KEYS[kw])]
    if clashes:
        raise ModelConfigError(f"MODEL.NAME {cfg.MODEL.NAME} builds {'; '.join(clashes)}: drop those keys or use "
                               f"MODEL.NAME {GENERIC_MODEL}")
    return merged


_SPATIAL_ATTENTION = ("cgd_height", "cgd_width", "cgd_hw")  # built for the feature size at each block


def _relevant(flat: Dict[str, Any]) -> Dict[str, Any]:
    """Leave out the keys of a module the model does not have (CGD position without CGD, ...), and the
    crop size unless a spatial CGD form (Fig. 4b/c) is built for it."""
    def used(kw: str) -> bool:
        if kw == "input_size":
            return flat["attention"] in _SPATIAL_ATTENTION
        return all(present(flat) for prefix, present in _ONLY_WITH.items() if kw.startswith(prefix))

    return {kw: v for kw, v in flat.items() if used(kw)}


def unused_model_keys(cfg) -> set:
    """The ``MODEL.*`` keys of modules the described model does not have (a CGD option on a plain C2D, CGNL
    groups without a CGNL block): read while resolving the model, without effect on it or its training."""
    used = _relevant(_resolved(cfg))
    return {key for kw, key in MODEL_KEYS.items() if kw not in used and key.startswith("MODEL.")}


def model_kwargs(cfg) -> Dict[str, Any]:
    """``C2DResNet`` keyword arguments of the model ``cfg`` describes (a preset's choices applied)."""
    flat = _relevant(_resolved(cfg))
    kw = {k: v for k, v in flat.items() if not k.startswith("attention_kwargs.")}
    attn = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("attention_kwargs.")}
    if attn:
        kw["attention_kwargs"] = attn
    return kw


def arch_keys(cfg) -> Dict[str, Any]:
    """``{"MODEL.KEY": value}`` of the resolved architecture: what a checkpoint's weights depend on."""
    flat = _relevant(_resolved(cfg))
    return {MODEL_KEYS[kw]: (list(v) if isinstance(v, tuple) else v) for kw, v in flat.items() if kw not in _INIT_ONLY}


def pretrained_warning(cfg) -> str | None:
    """The start-of-run warning when ``MODEL.PRETRAINED`` is left ``""`` (the paper configs do)."""
    if cfg.MODEL.PRETRAINED != UNSET:
        return None
    return ("MODEL.PRETRAINED is not set: training from random initialisation. The paper fine-tunes every "
            "video model from ImageNet weights (Sec. 4.1), so its numbers assume them: pass MODEL.PRETRAINED "
            "<torchvision resnet state_dict file>, or MODEL.PRETRAINED none to choose random init and silence this")


def bn_cancels_cgd_warning(cfg) -> str | None:
    """The start-of-run warning when the BatchNorm after CGD sees one clip at a time in training.

    CGD's ``mean`` / ``shared`` scale is one factor per (clip, channel) (Eq. 11/12), and a training-mode
    BN normalises each channel over (N, T, H, W): with N = 1 it divides the factor out exactly, so CGD
    changes nothing in training and its weights get no gradient, while in eval (running statistics)
    the untrained scale is applied. The ``frame`` / ``concat`` scales vary over T and survive.
    """
    kw = model_kwargs(cfg)
    temporal = kw.get("attention_kwargs", {}).get("temporal", "shared")
    if kw.get("attention") != "cgd" or temporal not in ("mean", "shared"):
        return None
    if cfg.TRAIN.BATCH_SIZE > 1 or cfg.TRAIN.SYNC_BN:
        return None
    return (f"TRAIN.BATCH_SIZE 1 without TRAIN.SYNC_BN: each BatchNorm after CGD (temporal {temporal!r}) normalises "
            "one clip at a time and divides CGD's per-channel scale out, so CGD does nothing in training and "
            "gets no gradient (its untrained scale still acts in eval). Use 2+ clips per process, "
            "TRAIN.SYNC_BN True under torchrun, or MODEL.CGD_TEMPORAL frame or concat")


def build_model(cfg, load_pretrained: bool = True) -> nn.Module:
    """The model ``cfg`` describes; ImageNet weights from ``MODEL.PRETRAINED`` when it names a file."""
    from cgd_video.models import C2DResNet, load_imagenet_weights

    model = C2DResNet(**model_kwargs(cfg))
    weights = cfg.MODEL.PRETRAINED
    if load_pretrained and weights not in (UNSET, RANDOM_INIT):
        try:
            load_imagenet_weights(model, weights)
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            raise ModelConfigError(f"MODEL.PRETRAINED: {str(e).splitlines()[0]}") from None
    return model


def check_model_compatible(ckpt: Dict[str, Any], cfg, path: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming the keys whose values differ between the checkpoint's model and
    ``cfg``'s (checkpoints without stored ``arch`` keys are compared through their stored config)."""
    from cgd_video.config import load_config_from_yaml_string
    from cgd_video.engine.checkpoint import check_compatible

    stored = ckpt.get("arch")
    if stored is None and ckpt.get("cfg"):
        stored = arch_keys(load_config_from_yaml_string(ckpt["cfg"]))
    if stored is not None:
        check_compatible(stored, arch_keys(cfg), path, "model")


def build_model_from_checkpoint(cfg, ckpt: Dict[str, Any], device="cpu", path: str = "checkpoint"):
    """The eval-mode model of a loaded checkpoint (``engine.checkpoint.load_checkpoint``) on ``device``.

    Shared by ``tools/test.py`` and the ``Predictor``: the checkpoint must fit ``cfg``'s model (differing
    architecture keys are named), every weight comes from the checkpoint, and with ``TEST.FUSE_BN`` eval
    BatchNorms are folded into their convs (``models/fusion.py``).
    """
    check_model_compatible(ckpt, cfg, path)
    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    if cfg.TEST.FUSE_BN:
        model.fuse_for_inference()
    return model

"""Loading weights into C2DResNet: ImageNet torchvision ResNets and PyTorchVideo's ``c2d_r50``.

The CGD paper starts every video run from ImageNet-pretrained C2D ResNet-50 (Sec. 4.1).  C2D's module
names follow torchvision's ResNet, so a torchvision state_dict loads as it is; the CGD, NL and CGNL
parameters are then reported as missing (they keep their identity-at-start init).  Nothing here
downloads: the file must already be on disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["load_imagenet_weights", "convert_pytorchvideo_c2d_state_dict"]

logger = logging.getLogger(__name__)

# Parameters that a torchvision ImageNet file cannot hold: they are expected to be missing.
_ADDED_MODULES = (".attn.", ".nl.")


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """A plain state_dict, or the ``model`` / ``state_dict`` entry of a checkpoint; strips ``module.``."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_imagenet_weights(
    model: nn.Module, path: str | os.PathLike
) -> tuple[list[str], list[str]]:
    """Load a LOCAL torchvision ResNet state_dict file (``torch.save(resnet50().state_dict(), path)``).

    ``fc`` is skipped when its shape differs (another class count).  Any other shape mismatch raises
    (wrong depth).  Returns ``(missing, unexpected)`` key lists; missing keys of the added modules
    (``.attn.``, ``.nl.``) are expected and logged at INFO, everything else at WARNING.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet weights file not found: {path!r} (load_imagenet_weights never downloads; save one "
            "with torch.save(torchvision.models.resnet50(weights=...).state_dict(), path) where you have internet)"
        )
    state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    own = model.state_dict()
    for key in ("fc.weight", "fc.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            logger.info("%s: skipping %s (shape %s, model has %s)", path, key, tuple(state[key].shape),
                        tuple(own[key].shape))
            del state[key]
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"{path}: shapes do not match the model (wrong depth?): " + "; ".join(bad[:5]))
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    expected = [k for k in missing if any(m in k for m in _ADDED_MODULES)]
    other = [k for k in missing if k not in expected]
    logger.info("%s: loaded %d tensors; %d added-module keys left at init", path, len(state) - len(unexpected),
                len(expected))
    if other:
        logger.warning("%s: missing keys: %s", path, other)
    if unexpected:
        logger.warning("%s: unexpected keys: %s", path, unexpected)
    return missing, unexpected


# PyTorchVideo c2d_r50 names -> ours.  blocks.0 is the stem, blocks.2 the pool after res2 (no weights).
_PTV_STAGES = {"1": "layer1", "3": "layer2", "4": "layer3", "5": "layer4"}
_PTV_BRANCH = {
    "branch2.conv_a": "conv1", "branch2.norm_a": "bn1",
    "branch2.conv_b": "conv2", "branch2.norm_b": "bn2",
    "branch2.conv_c": "conv3", "branch2.norm_c": "bn3",
    "branch1_conv": "downsample.0", "branch1_norm": "downsample.1",
}


def _ptv_key(key: str) -> str:
    parts = key.split(".")
    if parts[:2] == ["blocks", "0"]:
        return {"conv": "conv1", "norm": "bn1"}[parts[2]] + "." + ".".join(parts[3:])
    if parts[:3] == ["blocks", "6", "proj"]:
        return "fc." + ".".join(parts[3:])
    if parts[0] == "blocks" and parts[1] in _PTV_STAGES and parts[2] == "res_blocks":
        rest = ".".join(parts[4:])
        for src, dst in _PTV_BRANCH.items():
            if rest.startswith(src + "."):
                return f"{_PTV_STAGES[parts[1]]}.{parts[3]}.{dst}{rest[len(src):]}"
    raise KeyError(f"unrecognised PyTorchVideo c2d key {key!r}")


def convert_pytorchvideo_c2d_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a PyTorchVideo ``c2d_r50`` (or ``create_resnet`` C2D) state_dict to C2DResNet names.

    1×k×k ``Conv3d`` kernels become ``Conv2d`` kernels (the unit time axis is dropped).  Use with
    ``layout="pytorchvideo8"``, the layout of that model.  Raises KeyError on an unknown key and
    ValueError on a conv with a temporal kernel > 1 (not a C2D).
    """
    out = {}
    for key, value in state.items():
        new = _ptv_key(key)
        if value.dim() == 5:
            if value.shape[2] != 1:
                raise ValueError(f"{key}: temporal kernel {value.shape[2]} > 1, not a C2D conv")
            value = value.squeeze(2)
        out[new] = value
    return out

"""Inference-time Conv + BatchNorm folding for the C2D ResNet (explicit, irreversible, opt-in).

In eval mode a BatchNorm is the per-channel affine map ``bn(v) = k * v + shift`` with
``k = gamma / sqrt(running_var + eps)`` and ``shift = beta - k * running_mean``. When it directly
follows a convolution, ``bn(conv(x)) = conv'(x)`` with ``W' = W * k`` (per output channel) and
bias ``b' = k * b + shift``: the BN pass over the activations disappears.

Where CGD sits between a conv and its BN (``attention_position``, Table 4) the pair is *not*
folded into the conv: CGD pools the conv output before BN, and scaling it by ``k`` first would
change the max pool (negative ``k``) and the softmax. That BN stays and keeps its eval-time merge
with CGD's per-sample scale (``folding.scaled_batch_norm``, paper Sec. 3.3).

    model = create_model("c2d_r50_cgd", num_classes=400).eval()
    fuse_conv_bn(model)                # or model.fuse_for_inference()
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_conv_bn", "fuse_conv_bn", "FUSED_PAIRS"]

# (conv attribute, BN attribute) pairs folded when both exist on a module, before the CGD check.
FUSED_PAIRS: tuple[tuple[str, str], ...] = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("out", "bn"))


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Conv2d:
    """A new conv (with bias) computing ``bn(conv(x))`` of the eval-mode BN; weights keep their memory format."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cgd_video/models/fusion.py: cannot fold a BatchNorm without running statistics")
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"cgd_video/models/fusion.py: conv has {conv.out_channels} output channels, BN has {bn.num_features}"
        )
    dtype = torch.promote_types(conv.weight.dtype, torch.float32)
    k = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:
        k = k * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * k
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    if conv.bias is not None:
        shift = shift + k * conv.bias.to(dtype)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    w = conv.weight.to(dtype) * k.view(-1, *([1] * (conv.weight.dim() - 1)))
    memory_format = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) \
        and not conv.weight.is_contiguous() else torch.contiguous_format
    fused.weight.data = w.to(conv.weight.dtype).contiguous(memory_format=memory_format)
    fused.bias.copy_(shift.to(conv.weight.dtype))
    return fused


def _attention_index(module: nn.Module) -> int | None:
    """Which conv (1 or 2) of a C2D block is followed by its attention module, or None."""
    if getattr(module, "attn", None) is None:
        return None
    return getattr(module, "attn_index", None)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every eval BatchNorm that directly follows a conv into it, in place; returns ``model``.

    Folded: the stem (``conv1``/``bn1``), each block's ``conv{i}``/``bn{i}`` unless CGD sits
    after ``conv{i}``, every ``downsample`` (``Sequential(conv, bn)``) and the non-local block's
    ``out``/``bn``. The BN becomes ``nn.Identity``. The model is put in eval mode and marked
    ``model.fused_for_inference = True``; training a fused model is refused (its BNs are gone).
    """
    model.eval()
    for module in list(model.modules()):
        attn_at = _attention_index(module)
        for conv_name, bn_name in FUSED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
                continue
            if attn_at is not None and conv_name == f"conv{attn_at}":
                continue  # CGD between conv and BN: keep the BN (merged with CGD's scale at eval)
            setattr(module, conv_name, fold_conv_bn(conv, bn))
            setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[0], nn.Conv2d) \
                and isinstance(module[1], nn.modules.batchnorm._BatchNorm):
            module[0] = fold_conv_bn(module[0], module[1])
            module[1] = nn.Identity()
    model.fused_for_inference = True
    return model

"""Parameter and MAC counting with fvcore under one stated convention (PROTOCOL §6, Tables 3 and 11).

Convention (printed by ``tools/cost.py``):

* one multiply-add = one MAC (fvcore's "flop" is already one fused multiply-add);
* counted: convolutions, linear layers, matrix products (``mm``, ``addmm``, ``matmul``, ``bmm``,
  ``einsum``) and element-wise tensor-by-tensor products (``mul``, ``addcmul``: one MAC per output
  element) — the
  latter are the dot products of CGNL (⟨φ, g⟩ and its scaling of θ) and the O(C) vector work of CGD
  written as ``mul`` + ``sum``;
* not counted: BatchNorm, GroupNorm, ReLU, pooling (max / mean / amax), softmax, tanh, additions, bias
  terms (foldable or not multiply-adds);
* CGD is split in two: its O(C) vector work (the stages of Eq. 10/11, counted on
  :meth:`CGD.descriptor` alone — what the paper's "+0.095M" counts) and its passes over X (the spatial
  pooling that reads every element and the rescaling ``X ⊙ (1 + y)`` that writes every element),
  reported as element counts, never folded into the MAC figure.

Counting runs fvcore's ``FlopCountAnalysis`` (a JIT trace of a real forward) with the handlers below;
ops that the convention leaves out are *skipped*, and :func:`count_macs` returns them by name so the
caller can list them instead of printing fvcore's warnings.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

__all__ = [
    "COUNTED_OPS",
    "EXCLUDED_OPS",
    "MacCount",
    "CGDCost",
    "count_params",
    "count_macs",
    "cgd_cost",
]

# fvcore defaults that the convention excludes (normalisation and adaptive pooling are not MACs).
EXCLUDED_OPS: tuple[str, ...] = (
    "aten::batch_norm",
    "aten::group_norm",
    "aten::layer_norm",
    "aten::instance_norm",
    "aten::adaptive_avg_pool2d",
    "aten::upsample_nearest2d",
    "aten::upsample_bilinear2d",
    "aten::grid_sampler",
)


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape else 0


def elementwise_product_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::mul`` of two tensors: one MAC per output element (broadcasting included).

    Multiplications by a scalar (a Python number is traced as a 0-d tensor) and the integer shape
    arithmetic that a JIT trace records (``n * t``) are not products of feature tensors: zero.
    """
    if len(inputs) < 2 or not get_shape(inputs[0]) or not get_shape(inputs[1]):
        return 0
    return _numel(get_shape(outputs[0]))


def addcmul_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::addcmul(t, a, b)`` = ``t + a * b``: one MAC per output element when a and b are tensors."""
    if len(inputs) < 3 or not get_shape(inputs[1]) or not get_shape(inputs[2]):
        return 0
    return _numel(get_shape(outputs[0]))


def _read_input_jit(inputs: list[Any], outputs: list[Any]) -> Counter:
    """Elements read by a pooling reduction (``mean`` / ``amax``), booked as ``pool_read``, not MACs."""
    return Counter({"pool_read": _numel(get_shape(inputs[0]))})


# Ops counted as MACs besides fvcore's own conv / linear / (b)mm / matmul / einsum / addmm handlers.
_EXTRA_MAC_HANDLES = {
    "aten::mul": elementwise_product_jit,
    "aten::mul_": elementwise_product_jit,
    "aten::addcmul": addcmul_jit,
}
COUNTED_OPS: tuple[str, ...] = (
    "aten::_convolution",
    "aten::linear",
    "aten::addmm",
    "aten::mm",
    "aten::matmul",
    "aten::bmm",
    "aten::einsum",
    "aten::mul",
    "aten::addcmul",
)
# Reductions whose reads make up CGD's pooling pass.
_POOL_OPS: tuple[str, ...] = ("aten::mean", "aten::amax", "aten::max")


@dataclass(frozen=True)
class MacCount:
    """Result of :func:`count_macs`: total MACs, MACs per op and per module, skipped ops (name → calls)."""

    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CGDCost:
    """CGD work of a model for one input: O(C) vector MACs and the element counts of the X passes."""

    modules: int
    vector_macs: int
    pool_elements: int
    rescale_elements: int
    per_module: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _analysis(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], excluded_calls: Counter, extra: dict | None = None
) -> FlopCountAnalysis:
    def skip(name: str):
        def handle(inputs: list[Any], outputs: list[Any]) -> int:
            excluded_calls[name] += 1
            return 0

        return handle

    fca = FlopCountAnalysis(model, inputs)
    fca.set_op_handle(**{op: skip(op) for op in EXCLUDED_OPS}, **_EXTRA_MAC_HANDLES, **(extra or {}))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return fca


def _as_tuple(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def count_macs(
    model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], *, _extra: dict | None = None
) -> MacCount:
    """MACs of ``model(*inputs)`` under the module's convention (fvcore JIT trace, ``no_grad``).

    ``skipped`` lists every op of the trace that the convention does not count (with call counts),
    explicitly excluded ones (BN, GroupNorm) included, so nothing is silently dropped.
    """
    excluded: Counter = Counter()
    fca = _analysis(model, _as_tuple(inputs), excluded, _extra)
    with torch.no_grad():
        by_op = {k: int(v) for k, v in fca.by_operator().items() if v}
    skipped = Counter(fca.unsupported_ops()) + excluded
    total = sum(v for k, v in by_op.items() if k != "pool_read")
    by_mod = {k: int(v) for k, v in fca.by_module().items()}
    return MacCount(int(total), by_op, by_mod, dict(sorted(skipped.items())))


class _Descriptor(nn.Module):
    """Wraps a CGD so that a trace covers only :meth:`CGD.descriptor` (pooling + O(C) stages)."""

    def __init__(self, cgd: nn.Module) -> None:
        super().__init__()
        self.cgd = cgd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cgd.descriptor(x)


def _cgd_modules(model: nn.Module) -> dict[str, nn.Module]:
    from cgd_video.models.cgd import CGD

    return {name: m for name, m in model.named_modules() if isinstance(m, CGD)}


def _capture_cgd_inputs(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: dict[str, nn.Module]):
    """One forward (``no_grad``, the model's own mode) recording every CGD module's input.

    Both the plain path (``forward`` = ``x * scale(x)``) and the eval-time BN folding call
    ``CGD.scale(x)`` (DESIGN.md contract), so the input is taken there, by an instance-level wrapper
    removed afterwards.
    """
    captured: dict[str, torch.Tensor] = {}

    def recorder(name: str, scale):
        def wrapped(x: torch.Tensor) -> torch.Tensor:
            captured.setdefault(name, x.detach())
            return scale(x)

        return wrapped

    for name, m in names.items():
        m.scale = recorder(name, m.scale)
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for m in names.values():
            del m.scale  # back to the class method
    missing = sorted(set(names) - set(captured))
    if missing:
        raise RuntimeError(f"cgd_video/utils/cost.py: CGD modules never called in forward: {missing}")
    return captured


def cgd_cost(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> CGDCost:
    """Split every CGD module's cost into O(C) vector MACs, pooling reads and rescaling writes.

    * ``vector_macs``: the counter on ``descriptor`` alone (pooling and softmax/tanh not counted).
    * ``rescale_elements``: the counter on the full module minus its descriptor: the ``X ⊙ (1 + y)``
      products, one per element of X.
    * ``pool_elements``: elements read by the descriptor's reductions (spatial/temporal mean and max,
      the ``sum`` of the dot products excluded), counted by a separate pass of the tracer.
    """
    inputs = _as_tuple(inputs)
    names = _cgd_modules(model)
    if not names:
        return CGDCost(0, 0, 0, 0)
    captured = _capture_cgd_inputs(model, inputs, names)
    per_module: dict[str, dict[str, int]] = {}
    skipped: Counter = Counter()
    cache: dict[tuple, dict[str, int]] = {}  # identical modules on identical shapes count the same
    for name, cgd in names.items():
        x = captured[name]
        key = (type(cgd), cgd.extra_repr(), tuple(x.shape))
        if key not in cache:
            desc = count_macs(_Descriptor(cgd), x, _extra={op: _read_input_jit for op in _POOL_OPS})
            full = count_macs(cgd, x)
            skipped.update(full.skipped)
            cache[key] = {
                "vector_macs": desc.total,
                "rescale_elements": full.total - desc.total,
                "pool_elements": desc.by_operator.get("pool_read", 0),
            }
        per_module[name] = dict(cache[key])
    return CGDCost(
        modules=len(per_module),
        vector_macs=sum(v["vector_macs"] for v in per_module.values()),
        pool_elements=sum(v["pool_elements"] for v in per_module.values()),
        rescale_elements=sum(v["rescale_elements"] for v in per_module.values()),
        per_module=per_module,
        skipped=dict(sorted(skipped.items())),
    )

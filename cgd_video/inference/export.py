"""Export a trained C2D(+CGD) recogniser to TorchScript or ONNX for one clip shape, with a parity check.

The model is exported in eval mode, i.e. through the same path the eager model takes at test time
(CGD's per-sample scale folded into the following BN, Sec. 3.3 of the paper). :func:`check_parity`
runs the exported file and the eager model on the same random clips and reports the largest absolute
difference of the logits (and their scale).

ONNX needs the optional ``export`` extra (``pip install 'cgd_video[export]'``: onnx + onnxruntime);
both are imported lazily so that TorchScript export works without them. The ONNX graph is produced by
PyTorch's TorchScript-based exporter (``dynamo=False``): the torch.export-based one needs
``onnxscript``, which is not a dependency.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple, Union

import torch
from torch import nn

from cgd_video.utils.atomic import atomic_write_bytes

PathLike = Union[str, os.PathLike]
Runner = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "EXPORT_FORMATS",
    "export_model",
    "export_torchscript",
    "export_onnx",
    "load_exported",
    "check_parity",
    "Parity",
]

ONNX_INPUT, ONNX_OUTPUT = "clip", "logits"
DEFAULT_OPSET = 17


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"ONNX export needs the optional packages onnx and onnxruntime ({e}); install them with "
            "pip install 'cgd_video[export]', or use --format torchscript"
        ) from e
    return onnx, onnxruntime


def export_torchscript(model: nn.Module, example: torch.Tensor, path: PathLike) -> Path:
    """Trace ``model`` (eval mode) on ``example`` and save it to ``path`` atomically."""
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in forward become constants for this clip shape: expected, not worth a warning.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch>=2.10 steers users to torch.export
        torch.jit.save(traced, buf)
    return atomic_write_bytes(path, buf.getvalue())


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
) -> Path:
    """Export ``model`` (eval mode) to ONNX at ``path`` atomically; ``dynamic_batch`` marks the batch axis dynamic (check parity at the batch sizes you use: the graph may bake in the traced one).

    Input ``clip`` is ``(N, 3, T, H, W)`` float (ImageNet-normalised), output ``logits`` is ``(N, K)``.
    """
    onnx, _ = _require_onnx()
    model.eval()
    buf = io.BytesIO()
    dynamic_axes = {ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces itself
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return atomic_write_bytes(path, data)


def _load_torchscript(path: PathLike) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def _load_onnx(path: PathLike) -> Runner:
    _, ort = _require_onnx()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        (out,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: x.detach().cpu().numpy()})
        return torch.from_numpy(out)

    return run


EXPORT_FORMATS: Dict[str, Tuple[Callable[..., Path], Callable[[PathLike], Runner]]] = {
    "torchscript": (export_torchscript, _load_torchscript),
    "onnx": (export_onnx, _load_onnx),
}


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(EXPORT_FORMATS)}")


def export_model(model: nn.Module, clip_shape: Sequence[int], path: PathLike, fmt: str) -> Path:
    """Export ``model`` for inputs of ``clip_shape`` = ``(N, 3, T, H, W)`` in format ``fmt``."""
    _check_format(fmt)
    device = next(model.parameters()).device
    example = torch.randn(*clip_shape, device=device)
    return EXPORT_FORMATS[fmt][0](model.eval(), example, path)


def load_exported(path: PathLike, fmt: str) -> Runner:
    """A CPU function ``clip -> logits`` running the exported file."""
    _check_format(fmt)
    return EXPORT_FORMATS[fmt][1](path)


@dataclass(frozen=True)
class Parity:
    """Result of :func:`check_parity`: the largest absolute logit difference and the largest |logit|."""

    max_abs_diff: float
    max_abs_logit: float

    def ok(self, tolerance: float) -> bool:
        """Within ``tolerance`` absolute, or relative to the logits' scale when they exceed 1."""
        return self.max_abs_diff <= tolerance * max(1.0, self.max_abs_logit)


def check_parity(
    model: nn.Module,
    runner: Runner,
    clip_shape: Sequence[int],
    num_trials: int = 3,
    seed: int = 0,
) -> Parity:
    """Compare the eager ``model`` (eval, float32, CPU) with ``runner`` on ``num_trials`` random clips of
    ``clip_shape`` drawn from N(0, 1) with a fixed ``seed``."""
    model = model.eval().cpu().float()
    gen = torch.Generator().manual_seed(seed)
    worst, scale = 0.0, 0.0
    with torch.no_grad():
        for _ in range(num_trials):
            x = torch.randn(*clip_shape, generator=gen)
            ref = model(x)
            out = runner(x)
            if out.shape != ref.shape:
                raise RuntimeError(f"exported model returned shape {tuple(out.shape)}, eager {tuple(ref.shape)}")
            worst = max(worst, (out.float() - ref).abs().max().item())
            scale = max(scale, ref.abs().max().item())
    return Parity(worst, scale)

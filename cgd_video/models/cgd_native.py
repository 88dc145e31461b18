"""CGD v10 as one native CPU op (``csrc/cgd_cpu.cpp``), built on first use; the eager Function otherwise.

On the CPU a training-mode CGD module costs mostly host time and passes over X: the descriptor's ~80
small ops per module (4-10 µs each) and separate passes for the mean, the max, the rescale and the
backward's reductions (``docs/BENCHMARKS.md`` §6b-6h). The C++ op does the whole module (Eq. 10-12 and
the v10 cascade of Table 2, forward and backward) in one pass over X each way plus the rescale and
gradient writes, with the same saved tensors as :class:`~cgd_video.models.cgd_kernels.CGDFunction`.

It serves variant ``v10`` with temporal mode ``shared`` (Eq. 12) or ``mean`` (the configs' Table 3 row),
float32/float64 CPU clips whose (N, C, T, H, W) view has contiguous H*W rows or innermost channels,
in eager mode. Everything else (other variants and modes, CUDA, autocast dtypes, tracing and
``torch.compile``) takes ``CGDFunction``, which is also the reference the op is tested against
(``tests/test_cgd_native.py``).

On by default; ``CGD_VIDEO_NATIVE=0`` in the environment keeps the eager Function. Its math equals the
eager path's (float64: the same gradients to 1e-15 after ten optimiser steps of C2D-R18 + CGD; float32:
gradients as close to a float64 run as the eager path's). It was opt-in while the demo's recipe (LR 0.02)
diverged for epochs and ended lower with it in 9 of 15 seeds, as it did with ATen's scalar kernels and no
op at all; at the demo's steadier LR 0.005 both paths reach the same accuracy (docs/BENCHMARKS.md §6i-6j).

Building: ``torch.utils.cpp_extension.load`` compiles the source once per machine kind and torch version
(about 35-65 s on 2 cores; cached under ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``)
the first time an enabled run needs it, with AVX2 where ATen runs AVX2 (:data:`TARGETS`). It needs a C++
compiler and ninja. When either is missing or the build fails, CGD logs one warning and keeps the eager path.
The source is compiled from a copy named by its content in that cache (:func:`build_source`): ninja rebuilds
whenever the compile command changes, and the command names the source's path, so two checkouts that built
from their own paths took turns rebuilding (~50 s at the first CGD step of a run in the other one).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["SOURCE", "TARGETS", "applies", "build", "build_source", "cgd_v10", "cgd_v10_scale", "enabled", "load", "main", "serves", "target"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "cgd_cpu.cpp"
_DTYPES = (torch.float32, torch.float64)
_LOCK = threading.Lock()
_STATE: dict = {}  # "module": the loaded extension, or None once loading failed or is switched off


def load():
    """The compiled extension (built on first call, then cached), or ``None`` (off, or the build failed)."""
    if "module" in _STATE:
        return _STATE["module"]
    with _LOCK:
        if "module" not in _STATE:
            _STATE["module"] = _build()
    return _STATE["module"]


def enabled() -> bool:
    """Whether CGD's CPU training path may take the native op (on unless ``CGD_VIDEO_NATIVE=0``; module doc)."""
    return os.environ.get("CGD_VIDEO_NATIVE", "1") != "0"


# Build targets: extension name and compiler flags. "avx2" wherever ATen itself runs AVX2 or better: the
# per-channel max-position select of the channels-last pool pass vectorises only there (SSE4 has no blend GCC
# uses for it). The ISA is part of the name, so a cache shared by different machines (a cluster's home
# directory) keeps one build per kind and never hands an AVX2 build to a CPU without it. No FMA contraction:
# both builds round every operation alike, so they give the same bits (benchmarks/bench_cgd_op.py checks).
TARGETS = {
    "avx2": ("cgd_video_cgd_cpu_avx2", ["-O3", "-mavx2", "-ffp-contract=off", "-Wno-psabi"]),
    "baseline": ("cgd_video_cgd_cpu", ["-O3", "-ffp-contract=off", "-Wno-psabi"]),
}


def target() -> str:
    """The build target for this machine (a key of :data:`TARGETS`)."""
    return "avx2" if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else "baseline"


def build_source(cache_root: str | os.PathLike | None = None) -> Path:
    """:data:`SOURCE` copied to ``<cache_root>/cgd_video_sources/<sha256 prefix>/cgd_cpu.cpp`` (written once,
    atomically), the path every checkout of the same source compiles from. ``cache_root`` defaults to torch's
    extension cache (``TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    from cgd_video.utils.atomic import atomic_write_bytes

    data = SOURCE.read_bytes()
    root = Path(cache_root or os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    path = root / "cgd_video_sources" / hashlib.sha256(data).hexdigest()[:16] / SOURCE.name
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write_bytes(path, data)
    return path


def build(which: str):
    """Compile (or load from the cache) the extension for target ``which``; raises when the build fails."""
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)  # its import warns that a CPU-only machine has no CUDA runtime
    try:
        from torch.utils.cpp_extension import load as load_extension

        name, flags = TARGETS[which]
        return load_extension(name, [str(build_source())], extra_cflags=flags, verbose=False)
    finally:
        cpp_logger.setLevel(level)


def _build():
    try:
        return build(target())
    except Exception as exc:  # no compiler or ninja, a failed build: the eager path still works
        logger.warning("CGD: the native CPU op could not be built (%s: %s); using the eager path "
                       "(docs/BENCHMARKS.md §6h)", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None


def _clip_layout_ok(x: Tensor) -> bool:
    """(N, C, T, H, W) with each H*W row contiguous, or channels innermost (what the C++ op walks)."""
    n, c, t, h, w = x.shape
    sn, sc, st, sh, sw = x.stride()
    rows = (w == 1 or sw == 1) and (h == 1 or sh == w)
    channels_inner = (c == 1 or sc == 1) and (w == 1 or sw == c) and (h == 1 or sh == w * c)
    return rows or channels_inner


def serves(variant: str, temporal: str) -> bool:
    """Whether a CGD module of this variant and temporal mode can ever take the native op."""
    return variant == "v10" and temporal in ("shared", "mean")


def applies(x: Tensor, params: Sequence[Tensor]) -> bool:
    """Whether a module that :func:`serves` can take the native op on ``x`` now (training: :func:`cgd_v10`;
    evaluation: :func:`cgd_v10_scale`)."""
    return (
        x.device.type == "cpu"
        and enabled()
        and x.dtype in _DTYPES
        and all(p.dtype == x.dtype for p in params)
        and not torch.is_autocast_enabled("cpu")
        and _clip_layout_ok(x)
        and load() is not None
    )


def cgd_v10(x: Tensor, params: Sequence[Tensor], mean: bool) -> Tensor:
    """``x * s(x)`` of a v10 module (``mean``: temporal mode ``mean``, else ``shared``) as one autograd node;
    ``params`` are its ``[w0, b0, w1, b1, wf, bf]``."""
    return load().cgd_v10(x, *params, mean)


def cgd_v10_scale(x: Tensor, params: Sequence[Tensor], mean: bool) -> Tensor:
    """The module's scale ``s(x)`` as (N, C, 1, 1, 1), outside autograd (evaluation and inference): the
    forward's pools and descriptor in one call, where the eager path runs ~80 small ATen ops per module."""
    n, c = x.shape[:2]
    return load().cgd_v10_scale(x, *params, mean).view(n, c, 1, 1, 1)


def main() -> int:
    """Build (or find cached) this machine's op and say which;
    ``make venv`` runs it so that the first training run does not pay the build. Exit 0 either way (the
    eager path always works); the warning says why a build failed."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    module = load()
    print(f"cgd_video: native CGD op ({target()} build) " + (f"ready: {module.__file__}" if module is not None else
                                                            "not available; CGD trains on the eager path"))
    return 0

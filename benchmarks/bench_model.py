#!/usr/bin/env python
"""Wall-clock cost of our C2D-R50 (+CGD / +NL / +CGNL) and of PyTorchVideo's ``c2d_r50``, side by side.

    python benchmarks/bench_model.py --quick --json benchmarks/results/bench_model_quick_cpu.json
    python benchmarks/bench_model.py --device cuda --json benchmarks/results/bench_model_cuda.json

Two groups of A/B pairs, each measured *interleaved* in one process (A B, then B A, ... so that drift
and other processes' load hit both sides alike), after warm-up; a ratio is the median of the
per-pair ratios (>= 10 pairs), lower = faster for us:

* ``ours_vs_pytorchvideo_forward``: our C2D-R50 built with PyTorchVideo's 8-frame temporal layout
  (``layout="pytorchvideo8"``; our parity test shows the two compute the same function), *fused for
  inference* (``model.fuse_for_inference()``: eval BN folded into the convs), against
  ``pytorchvideo.models.hub.c2d_r50(pretrained=False)`` (unfused, as shipped), same input,
  ``torch.inference_mode``. ``ours_unfused_vs_pytorchvideo_forward``: the same with our plain eval
  model (no folding), measured in the same interleaved run.
* ``{cgd_shared,cgd_concat,nl,cgnl}_overhead_{train,forward}``: the Non-local paper's 32-frame C2D-R50
  (our default layout) with one addition against the same network without it; ``train`` is one
  forward + backward (cross-entropy, gradients set to None between steps, no optimizer step).
  On request (``--models``), two floors for CGD's place: ``floor_identity`` (each CGD replaced by an
  autograd Function computing ``x * 1`` both ways) and ``floor_mean_scale`` (a scale from one spatial
  mean, then the multiply): what a module there costs before any descriptor work. Also on request,
  ``cgd_shared_eager``: ``cgd_shared`` held to the eager ``CGDFunction``, so that (with the native op, on
  by default) one run times both CPU paths of CGD side by side.

Variants: fp32 and channels_last everywhere; on CUDA also bf16 autocast (+ channels_last) and
torch.compile (bf16 + channels_last); on request ``compile_fp32`` / ``compile_channels_last``
(torch.compile in fp32, inductor's C++ kernels on the CPU: what ``TRAIN.COMPILE True`` runs there). Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU
the peak resident set size during one step (``VmHWM`` of /proc/self/status after resetting it through
/proc/self/clear_refs) minus the resident size before it, measured in one spawned child process with
glibc's mmap threshold pinned at 64 KiB so that freed tensors go back to the OS instead of hiding in
malloc's free lists. The timings run in this process with glibc's default allocator, as
``tools/train.py`` does: with the pinned threshold every tensor over 64 KiB is a fresh mmap with its page
faults, which made a C2D-R50 step at the quick size about 40% slower than training runs it.

``--quick``: 8 frames at 112x112, 10 pairs, fp32 + channels_last: about two minutes on 2 CPU cores.
``--models`` / ``--modes`` / ``--no-ptv`` restrict what is timed (``benchmarks/gpu_check.sh`` uses them to keep
the compiled variant, where every model and mode is one compilation, inside its time budget).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cgd_video.models import cgd_native, create_model  # noqa: E402
from cgd_video.models.cgd import CGD  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

NUM_CLASSES = 400
PTV = "pytorchvideo_c2d_r50"
PTV_GROUP = ["ours_pytorchvideo8_fused", "ours_pytorchvideo8", PTV]

# Overhead group: name -> (registry name, overrides) on the default (Non-local, 32-frame) layout.
OVERHEAD_MODELS: dict[str, tuple[str, dict]] = {
    "c2d": ("c2d_r50", {}),
    "cgd_shared": ("c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": "shared"}}),
    "cgd_concat": ("c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": "concat"}}),
    "cgd_mean": ("c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": "mean"}}),  # Table 3's row
    # On request: CGD v10 shared held to the eager Function, beside "cgd_shared" on the native op
    # (on unless CGD_VIDEO_NATIVE=0): both CPU paths in one run
    "cgd_shared_eager": ("c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": "shared"}}),
    "nl": ("c2d_r50_nl", {}),
    "cgnl": ("c2d_r50_cgnl", {}),
    # Floors, on request: the CGD network with every CGD module replaced by a stand-in (below)
    "floor_identity": ("c2d_r50_cgd", {}),
    "floor_mean_scale": ("c2d_r50_cgd", {}),
}

DEFAULT_MODELS = ("c2d", "cgd_shared", "cgd_concat", "nl", "cgnl")  # cgd_mean on request (--models)

# Variant name -> (channels_last, autocast dtype or None, torch.compile)
VARIANTS: dict[str, tuple[bool, torch.dtype | None, bool]] = {
    "fp32": (False, None, False),
    "channels_last": (True, None, False),
    "bf16": (True, torch.bfloat16, False),
    "compile": (True, torch.bfloat16, True),
    # CPU: inductor's C++ kernels, fp32 (bf16 autocast is slower than fp32 on CPUs without AMX)
    "compile_fp32": (False, None, True),
    "compile_channels_last": (True, None, True),
}
DEFAULT_VARIANTS = {"cpu": ("fp32", "channels_last"), "cuda": ("fp32", "channels_last", "bf16", "compile")}


# -- models --------------------------------------------------------------------------------------
def build_pytorchvideo_c2d(num_frames: int, size: int) -> nn.Module:
    """PyTorchVideo's hub ``c2d_r50`` (random init, nothing downloaded), head pool sized for the input.

    Its layout keeps T through res2 and halves it after (pool (2,1,1)); res5 is T/2 x size/32 x size/32.
    """
    from pytorchvideo.models.hub import c2d_r50

    return c2d_r50(pretrained=False, model_num_class=NUM_CLASSES,
                   head_pool_kernel_size=(num_frames // 2, size // 32, size // 32))


class _Identity(torch.autograd.Function):
    """``x * 1`` both ways: one more tensor between conv1 and its BN, what any module placed there costs."""

    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.0


class _MeanScale(torch.autograd.Function):
    """A per-(sample, channel, frame) scale from one spatial mean (fixed at 1): a CGD without a descriptor."""

    @staticmethod
    def forward(ctx, x):
        s = 1.0 + 0.0 * x.mean((3, 4), keepdim=True)
        ctx.save_for_backward(s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        return grad * s


class _Floor(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


FLOORS = {"floor_identity": _Identity, "floor_mean_scale": _MeanScale}


def build_ours(name: str, overrides: dict, num_frames: int, layout: str, key: str = "") -> nn.Module:
    """Our model; a ``FLOORS`` key swaps each block's CGD for that stand-in (how low CGD's cost can go
    for a module in that place, implemented as one autograd Function: the lower bound of issue 14's CPU
    targets for this design)."""
    model = create_model(name, num_classes=NUM_CLASSES, num_frames=num_frames, layout=layout, **overrides)
    for cgd in model.modules() if key.endswith("_eager") else ():
        if isinstance(cgd, CGD):
            cgd._native = False  # the module never takes the native op (cgd.py, CGD.forward)
    for block in model.modules() if key in FLOORS else ():
        if getattr(block, "attn", None) is not None:
            block.attn = _Floor(FLOORS[key])
    return model


def build_case(group: str, key: str, args) -> tuple[nn.Module, torch.Tensor]:
    """Model and input of one timed case: ``group`` "ptv" (ours vs PyTorchVideo) or "overhead"."""
    if group == "ptv":
        x = torch.randn(args.batch, 3, args.ptv_frames, args.size, args.size)
        if key == PTV:
            return build_pytorchvideo_c2d(args.ptv_frames, args.size), x
        ours = build_ours("c2d_r50", {}, args.ptv_frames, "pytorchvideo8")
        return (ours.fuse_for_inference() if key == "ours_pytorchvideo8_fused" else ours), x
    name, kw = OVERHEAD_MODELS[key]
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    return build_ours(name, kw, args.frames, "nonlocal32", key), x


def group_cases(args) -> dict[str, tuple[list[str], list[str]]]:
    """group -> (keys, modes) that this run times."""
    cases = {} if args.no_ptv else {"ptv": (PTV_GROUP, ["forward"])}
    keys = [k for k in OVERHEAD_MODELS if k in args.models]
    if len(keys) > 1:  # c2d and at least one addition to compare with it
        cases["overhead"] = (keys, list(args.modes))
    return cases


def prepare(model: nn.Module, x: torch.Tensor, device: torch.device, variant: str):
    """Move model and input to the device and memory format of ``variant``; compile if asked."""
    channels_last, _, compile_ = VARIANTS[variant]
    model = model.to(device)
    x = x.to(device)
    if channels_last:
        has_3d = any(p.dim() == 5 for p in model.parameters())
        model = model.to(memory_format=torch.channels_last_3d if has_3d else torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    if compile_:
        model = torch.compile(model)
    return model, x


def make_steps(model: nn.Module, x: torch.Tensor, variant: str) -> dict[str, Callable[[], None]]:
    """``forward`` (inference mode, eval) and ``train`` (forward + backward, train mode) closures."""
    dtype = VARIANTS[variant][1]
    device_type = x.device.type
    autocast = (lambda: torch.autocast(device_type, dtype=dtype)) if dtype else contextlib.nullcontext
    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

    def forward() -> None:
        model.eval()
        with torch.inference_mode(), autocast():
            model(x)

    def train() -> None:
        model.train()
        for p in model.parameters():
            p.grad = None
        with autocast():
            loss = nn.functional.cross_entropy(model(x).float(), target)
        loss.backward()

    return {"forward": forward, "train": train}


# -- timing and memory ---------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _pin_malloc() -> bool:
    """Make glibc return freed large blocks to the OS (mmap threshold 64 KiB, no dynamic growth)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_memory(fn: Callable[[], None], device: torch.device) -> int | None:
    """Bytes allocated at the peak of one call above what was live before it (None if unmeasurable)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) * 1024
    except (OSError, KeyError):
        return None


def _memory_child(args: argparse.Namespace) -> dict:
    """In a fresh process (glibc mmap threshold pinned): {variant: {key: {mode: peak bytes}}}."""
    if args.threads:
        torch.set_num_threads(args.threads)
    pinned = _pin_malloc()
    device, out = torch.device("cpu"), {}
    for variant in args.variants:
        for group, (keys, modes) in group_cases(args).items():
            for key in keys:
                torch.manual_seed(0)
                steps = make_steps(*prepare(*build_case(group, key, args), device, variant), variant)
                for mode in modes:
                    steps[mode]()  # warm-up: no one-time allocations in the measured call
                    out.setdefault(variant, {}).setdefault(key, {})[mode] = peak_memory(steps[mode], device) if pinned else None
                del steps
                gc.collect()
    return out


def cpu_peak_memory(args: argparse.Namespace) -> dict:
    """:func:`_memory_child` in one spawned process, so that the timings keep the default allocator."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_memory_child, (args,))


@dataclass
class PairResult:
    a: str
    b: str
    ratios: list[float]

    def summary(self) -> dict:
        q = statistics.quantiles(self.ratios, n=4, method="inclusive") if len(self.ratios) > 1 else [self.ratios[0]] * 3
        return {"median": statistics.median(self.ratios), "p25": q[0], "p75": q[2], "pairs": len(self.ratios)}


def interleaved(
    steps: dict[str, Callable[[], None]], pairs: Sequence[tuple[str, str]], n_pairs: int, warmup: int,
    device: torch.device, desc: str,
) -> tuple[list[PairResult], dict[str, list[float]]]:
    """Time every (A, B) pair ``n_pairs`` times, alternating A-B / B-A, after ``warmup`` calls of each."""
    for name in steps:
        for _ in range(warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in steps}
    results = [PairResult(a, b, []) for a, b in pairs]
    for r in tqdm(range(n_pairs), desc=desc, leave=False, file=sys.stderr):
        for res in results:
            order = (res.a, res.b) if r % 2 == 0 else (res.b, res.a)
            t = {name: timed(steps[name], device) for name in order}
            res.ratios.append(t[res.b] / t[res.a])
            for name, v in t.items():
                times[name].append(v)
    return results, times


# -- main ----------------------------------------------------------------------------------------
def run_variant(args, variant: str, device: torch.device) -> dict:
    torch.manual_seed(0)
    out: dict = {"models": {}, "ratios": {}, "ratio_spread": {}}

    def record(key: str, times: dict[str, list[float]], mode: str, mem: dict[str, int | None]) -> None:
        for name, ts in times.items():
            fused = name == "ours_pytorchvideo8_fused"  # same model, fused: kept on its unfused row
            entry = out["models"].setdefault("ours_pytorchvideo8" if fused else name, {})
            entry[f"{mode}_fused_ms" if fused else f"{mode}_ms"] = 1e3 * statistics.median(ts)
            entry[f"{mode}_fused_peak_bytes" if fused else f"{mode}_peak_bytes"] = mem.get(name)

    cases = group_cases(args)
    if "ptv" in cases:
        _pytorchvideo_group(args, variant, device, out, record)
    if "overhead" in cases:
        _overhead_group(args, variant, device, out, record)
    return out


def _pytorchvideo_group(args, variant: str, device: torch.device, out: dict, record) -> None:
    """Group 1: ours vs PyTorchVideo, same (PyTorchVideo 8-frame) layout and input, forward."""
    steps = {k: make_steps(*prepare(*build_case("ptv", k, args), device, variant), variant) for k in PTV_GROUP}
    fwd = {k: s["forward"] for k, s in steps.items()}
    results, times = interleaved(fwd, [(PTV, "ours_pytorchvideo8_fused"), (PTV, "ours_pytorchvideo8")],
                                 args.pairs, args.warmup, device, f"{variant}: ours vs pytorchvideo")
    mem = _cuda_memory(fwd, device)  # after warm-up: no one-time allocations
    # ratio ours / theirs: the pairs are (A = theirs, B = ours), so B / A is what we want.
    # Headline: ours fused for inference (model.fuse_for_inference()); the unfused eval model too.
    for res, key in zip(results, ("ours_vs_pytorchvideo_forward", "ours_unfused_vs_pytorchvideo_forward")):
        out["ratios"][key] = res.summary()["median"]
        out["ratio_spread"][key] = res.summary()
    record("ptv", times, "forward", mem)
    del steps, fwd
    gc.collect()


def _cuda_memory(fns: dict[str, Callable[[], None]], device: torch.device) -> dict[str, int | None]:
    """Peak memory per step on CUDA, measured here; on the CPU it comes from :func:`cpu_peak_memory`."""
    return {k: peak_memory(f, device) for k, f in fns.items()} if device.type == "cuda" else {}


def _overhead_group(args, variant: str, device: torch.device, out: dict, record) -> None:
    """Group 2: overheads on the 32-frame C2D-R50, forward + backward and forward."""
    keys = group_cases(args)["overhead"][0]
    steps = {k: make_steps(*prepare(*build_case("overhead", k, args), device, variant), variant) for k in keys}
    others = [k for k in keys if k != "c2d"]
    for mode in args.modes:
        fns = {k: s[mode] for k, s in steps.items()}
        results, times = interleaved(fns, [("c2d", k) for k in others], args.pairs, args.warmup, device,
                                     f"{variant}: overhead {mode}")
        mem = _cuda_memory(fns, device)
        for res in results:
            out["ratios"][f"{res.b}_overhead_{mode}"] = res.summary()["median"]
            out["ratio_spread"][f"{res.b}_overhead_{mode}"] = res.summary()
        record("overhead", times, mode, mem)
    del steps
    gc.collect()


def render(result: dict) -> str:
    lines = [f"device: {result['device_name']}  torch {result['torch']}  threads {result['threads']}  "
             f"load avg before/after {result['load_average_before']} / {result['load_average_after']}  "
             f"CGD native CPU op: {'yes' if result.get('cgd_native_cpu_op') else 'no'}",
             f"inputs: overhead group {result['inputs']['overhead']}, pytorchvideo pair {result['inputs']['pytorchvideo']}; "
             f"{result['pairs']} interleaved pairs after {result['warmup']} warm-up calls; memory: {result['memory_method']}"]
    for variant, v in result["variants"].items():
        lines.append(f"\n[{variant}]")
        head = f"{'model':<22}{'fwd ms':>10}{'fwd+bwd ms':>12}{'fwd peak MB':>13}{'train peak MB':>15}"
        lines += [head, "-" * len(head)]
        for name, m in v["models"].items():
            def mb(key: str) -> str:
                return "n/a" if m.get(key) is None else f"{m[key] / 2**20:.0f}"

            train = f"{m['train_ms']:.1f}" if "train_ms" in m else "-"
            fwd = f"{m['forward_ms']:.1f}" if "forward_ms" in m else "-"
            lines.append(f"{name:<22}{fwd:>10}{train:>12}{(mb('forward_peak_bytes') if 'forward_ms' in m else '-'):>13}"
                         f"{(mb('train_peak_bytes') if 'train_ms' in m else '-'):>15}")
            if "forward_fused_ms" in m:
                lines.append(f"{name + ' (fused)':<22}{m['forward_fused_ms']:>10.1f}{'-':>12}"
                             f"{mb('forward_fused_peak_bytes'):>13}{'-':>15}")
        lines.append(f"{'ratio (median of pairs)':<36}{'median':>8}{'p25':>8}{'p75':>8}")
        for key, s in v["ratio_spread"].items():
            lines.append(f"{key:<36}{s['median']:>8.3f}{s['p25']:>8.3f}{s['p75']:>8.3f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    ap.add_argument("--quick", action="store_true", help="8 frames at 112x112, 10 pairs (about 2 min on 2 cores)")
    ap.add_argument("--frames", type=int, help="clip length of the overhead group (default 32; quick 8)")
    ap.add_argument("--ptv-frames", type=int, help="clip length of the PyTorchVideo pair (default 8)")
    ap.add_argument("--size", type=int, help="crop size (default 224; quick 112)")
    ap.add_argument("--batch", type=int, default=1, help="clips per step")
    ap.add_argument("--pairs", type=int, help="interleaved A/B pairs per ratio (default 10, at least 1)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per model first")
    ap.add_argument("--variants", help=f"comma list of {', '.join(VARIANTS)} (default: "
                                       f"{'/'.join(DEFAULT_VARIANTS['cpu'])} on cpu, all on cuda)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma list of the overhead group's models (c2d is always timed; c2d alone: no overhead group)")
    ap.add_argument("--modes", default="train,forward", help="comma list of train, forward (overhead group)")
    ap.add_argument("--no-ptv", action="store_true", help="skip the ours vs PyTorchVideo forward group")
    ap.add_argument("--no-memory", action="store_true",
                    help="CPU: skip the peak-RSS child (it builds, and compiles, every case a second time)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    args.models = ["c2d", *(m for m in args.models.split(",") if m and m != "c2d")]
    args.modes = [m for m in args.modes.split(",") if m]
    for flag, chosen, valid in (("--models", args.models, OVERHEAD_MODELS), ("--modes", args.modes, ("train", "forward"))):
        if any(v not in valid for v in chosen) or not chosen:
            ap.error(f"{flag}: unknown or empty {[v for v in chosen if v not in valid]}; valid: {', '.join(valid)}")
    args.frames = args.frames or (8 if args.quick else 32)
    args.ptv_frames = args.ptv_frames or 8
    args.size = args.size or (112 if args.quick else 224)
    args.pairs = max(1, args.pairs or 10)
    kind = torch.device(args.device).type
    chosen = args.variants.split(",") if args.variants else list(DEFAULT_VARIANTS.get(kind, ("fp32",)))
    bad = [v for v in chosen if v not in VARIANTS]
    if bad:
        ap.error(f"--variants: unknown {bad}; valid: {', '.join(VARIANTS)}")
    args.variants = chosen
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_model.py: --device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training would run; warm-up calls pick the algorithms
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        # which path CGD's CPU training step takes: the native op (cgd_native.py) or the eager Function
        "cgd_native_cpu_op": device.type == "cpu" and cgd_native.enabled() and cgd_native.load() is not None,
        "quick": args.quick,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "inputs": {"overhead": [args.batch, 3, args.frames, args.size, args.size],
                   "pytorchvideo": [args.batch, 3, args.ptv_frames, args.size, args.size]},
        "pairs": args.pairs,
        "warmup": args.warmup,
        "memory_method": ("torch.cuda.max_memory_allocated minus allocated before the step" if device.type == "cuda"
                          else "not measured (--no-memory)" if args.no_memory
                          else "peak RSS (VmHWM after /proc/self/clear_refs reset) minus RSS before the step, "
                               "in a spawned child with glibc's mmap threshold pinned at 64 KiB (timings: default "
                               "allocator)"),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "variants": {},
    }
    for variant in args.variants:
        result["variants"][variant] = run_variant(args, variant, device)
    if device.type == "cpu" and not args.no_memory:
        for variant, per_key in cpu_peak_memory(args).items():
            models = result["variants"][variant]["models"]
            for key, per_mode in per_key.items():
                fused = key == "ours_pytorchvideo8_fused"
                for mode, peak in per_mode.items():
                    models["ours_pytorchvideo8" if fused else key][f"{mode}_fused_peak_bytes" if fused else f"{mode}_peak_bytes"] = peak
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result["ratios"] = dict(result["variants"][args.variants[0]]["ratios"])
    result["models_timed"], result["modes"], result["no_ptv"] = args.models, args.modes, args.no_ptv
    result["ratios_variant"] = args.variants[0]
    print(render(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or "cpu"


if __name__ == "__main__":
    raise SystemExit(main())

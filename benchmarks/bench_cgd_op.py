#!/usr/bin/env python
"""CGD v10's training cost per network, module by module: the native op's builds against the eager Function.

    python benchmarks/bench_cgd_op.py --json benchmarks/results/bench_cgd_op_cpu.json          # 32x224, 16 rounds
    python benchmarks/bench_cgd_op.py --quick --json /tmp/bench_cgd_op_quick.json             # 8x112, 4 rounds

The CGD modules of C2D-R50 + CGD v10 (temporal ``shared``, one per bottleneck, the Non-local paper's
32-frame layout) are found by running the real model once on a ``--frames`` x ``--size``\\ :sup:`2` clip
and recording each module's input (shape and memory layout: contiguous, or channels_last_3d when the
model runs in that format). Then each implementation runs forward + backward on clips of exactly those
shapes, one thread:

  eager      ``CGDFunction`` (cgd_kernels.py), the default path
  native     the C++ op built for this machine (``cgd_native.target()``: ``avx2`` where ATen runs AVX2)
  baseline   the same source built without ``-mavx2`` (what a machine without AVX2 gets)
  floor      ``x * s`` and ``grad * s`` with a given scale: the two passes any rescaling module makes

Before timing, the native builds' outputs and gradients are checked bit-equal to each other and close to
the eager Function's. Each round runs every implementation over all modules of the network (their time
summed: one network's CGD cost), in an order rotated from round to round. JSON ``ratios`` (medians over
rounds of per-round ratios, p25-p75 in ``ratio_spread``): ``eager_vs_native_<layout>``,
``baseline_vs_native_<layout>`` (what the AVX2 build saves) and ``native_vs_floor_<layout>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgd_video.models import cgd_native, create_model  # noqa: E402
from cgd_video.models.cgd import CGD  # noqa: E402
from cgd_video.models.cgd_kernels import CGDFunction  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

LAYOUTS = {"contiguous": False, "channels_last": True}


def module_inputs(frames: int, size: int, channels_last: bool) -> list[tuple[CGD, tuple, tuple]]:
    """(module, input shape, input strides) of every CGD module of C2D-R50 + CGD v10 shared on one clip."""
    model = create_model("c2d_r50_cgd", num_classes=10, num_frames=frames, layout="nonlocal32",
                         attention_kwargs={"variant": "v10", "temporal": "shared"})
    x = torch.randn(1, 3, frames, size, size)
    if channels_last:  # as bench_model.py's channels_last variant: 2-D convs channels_last, the clip 3-D
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    seen: list[tuple[CGD, tuple, tuple]] = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append((m, tuple(a[0].shape), a[0].stride())))
             for m in model.modules() if isinstance(m, CGD)]
    with torch.no_grad():
        model(x)  # in training mode, as the step it measures (eval blocks may call CGD.scale directly)
    for h in hooks:
        h.remove()
    return seen


def _clip(shape, stride, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.empty_strided(shape, stride).copy_(torch.randn(shape, generator=g))


def step_fns(ops: dict) -> dict:
    """Implementation name -> fn(module, x, grad) running one forward + backward."""
    def eager(m, x, g):
        params = m._params()
        out = CGDFunction.apply(x, m, *params)
        return out, torch.autograd.grad(out, [x, *params], g)

    def native_with(op):
        def run(m, x, g):
            params = m._params()
            out = op.cgd_v10(x, *params, False)
            return out, torch.autograd.grad(out, [x, *params], g)
        return run

    def floor(m, x, g):
        with torch.no_grad():
            s = torch.full((x.shape[0], x.shape[1], 1, 1, 1), 1.5)
            return x * s, (g * s,)

    fns = {"eager": eager, "floor": floor}
    fns.update({name: native_with(op) for name, op in ops.items()})
    return fns


def check(fns: dict, cases) -> None:
    """The native builds agree bit for bit, and with the eager Function to float32 rounding."""
    for m, x, g in cases:
        ref_out, ref_grads = fns["eager"](m, x, g)
        outs = {k: fns[k](m, x, g) for k in fns if k not in ("eager", "floor")}
        first = next(iter(outs.values()))
        for name, (out, grads) in outs.items():
            assert torch.equal(out, first[0]) and all(torch.equal(a, b) for a, b in zip(grads, first[1])), \
                f"{name} differs from another build"
            assert (out - ref_out).abs().max() <= 2e-5 * ref_out.abs().max(), f"{name} output vs eager"
            for a, b in zip(grads, ref_grads):
                assert (a - b).abs().max() <= 2e-4 * max(b.abs().max(), 1.0), f"{name} gradient vs eager"


def measure(fns: dict, cases, rounds: int) -> dict[str, list[float]]:
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds + 1):  # round 0 warms up
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            for m, x, g in cases:
                fns[name](m, x, g)
            if r:
                times[name].append(time.perf_counter() - t0)
    return times


def spread(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="8 frames at 112, 4 rounds")
    parser.add_argument("--no-baseline", action="store_true", help="skip the second (non-AVX2) build")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.size, args.rounds = 8, 112, 4
    torch.set_num_threads(1)
    torch.manual_seed(0)

    ops = {"native": cgd_native.build(cgd_native.target())}
    if not args.no_baseline and cgd_native.target() != "baseline":
        ops["baseline"] = cgd_native.build("baseline")
    fns = step_fns(ops)
    result: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                "native_target": cgd_native.target()},
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "layouts": {}, "ratios": {}, "ratio_spread": {}}
    for layout, fmt in LAYOUTS.items():
        inputs = module_inputs(args.frames, args.size, fmt)
        cases = [(m, _clip(shape, stride, i).requires_grad_(True), _clip(shape, stride, 1000 + i))
                 for i, (m, shape, stride) in enumerate(inputs)]
        check(fns, cases)
        times = measure(fns, cases, args.rounds)
        result["layouts"][layout] = {"modules": len(cases), "shapes": sorted({str(s) for _, s, _ in inputs}),
                                     "ms": {k: spread([1e3 * t for t in v]) for k, v in times.items()}}
        pairs = [("eager", "native"), ("native", "floor")] + ([("baseline", "native")] if "baseline" in fns else [])
        for a, b in pairs:
            key = f"{a}_vs_{b}_{layout}"
            s = spread([ta / tb for ta, tb in zip(times[a], times[b])])
            result["ratios"][key], result["ratio_spread"][key] = s["median"], s
    print(render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def render(result: dict) -> str:
    a = result["args"]
    lines = [f"CGD v10 shared in C2D-R50, {a['frames']}x{a['size']}^2, one thread, {a['rounds']} rounds "
             f"(native = {result['machine']['native_target']} build)", ""]
    for layout, r in result["layouts"].items():
        ms = "  ".join(f"{k} {v['median']:.1f} ms" for k, v in r["ms"].items())
        lines.append(f"{layout:13s} {r['modules']} modules: {ms}")
    lines.append("")
    for key, v in result["ratios"].items():
        s = result["ratio_spread"][key]
        lines.append(f"{key:36s} {v:6.3f}  (p25-p75 {s['p25']:.3f}-{s['p75']:.3f})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

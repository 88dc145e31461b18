#!/usr/bin/env python
"""Model-only training step rate: clips/s of full optimiser steps on a batch already on the device.

    python benchmarks/bench_step.py --device cuda --frames 32 --size 224 --batch 8 --amp bf16 \
        --channels-last --json outputs/bench/step_cuda.json

No data loading: one random batch lives on the device, and every step is forward, cross-entropy,
backward and an SGD step (momentum 0.9, weight decay 1e-4) under autocast, the work of
``tools/train.py``'s hot loop without its loader. C2D-R50 and C2D-R50 + CGD v10 (shared) are stepped
*interleaved* in blocks of ``--steps`` (A B, then B A, ...), so ``ratios.cgd_shared_step_time`` is
measured side by side; clips/s = batch x steps / seconds of a block (the device synchronised at both
ends), median over ``--rounds`` blocks per model. ``--compile`` wraps each model in ``torch.compile``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench_model import NUM_CLASSES, OVERHEAD_MODELS, build_ours, timed  # noqa: E402
from cgd_video.runtime import AMP_MODES, autocast_context, grad_scaler, maybe_compile  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

MODELS = ("c2d", "cgd_shared")  # keys of bench_model.OVERHEAD_MODELS


def make_stepper(name: str, args, device: torch.device):
    """A closure doing one optimiser step of model ``name`` on a fixed random batch."""
    torch.manual_seed(0)
    model = build_ours(*OVERHEAD_MODELS[name], args.frames, "nonlocal32").to(device)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    fn = maybe_compile(model, args.compile)
    scaler = grad_scaler(device, args.amp)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, args.amp):
            loss = nn.functional.cross_entropy(fn(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def block_seconds(step, steps: int, device: torch.device) -> float:
    """Seconds of ``steps`` calls of ``step``, the device synchronised at both ends."""
    return timed(lambda: [step() for _ in range(steps)], device)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", choices=AMP_MODES, default="none")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=10, help="optimiser steps per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="timed blocks per model (interleaved)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steppers = {name: make_stepper(name, args, device) for name in MODELS}
    for step in steppers.values():
        for _ in range(args.warmup):
            step()
    secs: dict[str, list[float]] = {name: [] for name in steppers}
    for r in range(max(1, args.rounds)):
        for name in (list(steppers) if r % 2 == 0 else list(steppers)[::-1]):
            secs[name].append(block_seconds(steppers[name], args.steps, device))
    rates = {name: args.batch * args.steps / statistics.median(s) for name, s in secs.items()}
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "input": [args.batch, 3, args.frames, args.size, args.size],
        "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
        "steps_per_block": args.steps, "rounds": args.rounds,
        "clips_per_s": rates,
        "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "ratios": {"cgd_shared_step_time": rates["c2d"] / rates["cgd_shared"]},
        "command": " ".join(["bench_step.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>10.2f} clips/s")
    print(f"cgd_shared / c2d step time: {result['ratios']['cgd_shared_step_time']:.3f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

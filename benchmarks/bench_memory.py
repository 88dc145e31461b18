#!/usr/bin/env python
"""Activation memory a training step keeps for its backward: C2D-R50 against the same network + CGD / NL / CGNL.

    python benchmarks/bench_memory.py --json benchmarks/results/bench_memory_full_cpu.json

Counts, during one training-mode forward, every tensor that autograd saves for the backward
(``torch.autograd.graph.saved_tensors_hooks``), once per storage (a tensor saved by two nodes, such as
CGD's output that the next BN also saves, counts once); parameters, their gradients and the input are
left out (the same on both sides). This is the part of the training peak that an addition changes, and
unlike a resident-set or allocator peak it is exact and independent of machine load. Custom autograd
Functions save through ``ctx.save_for_backward`` and are counted; tensors kept on ``ctx`` as plain
attributes (CGD's tiny descriptor graph, O(N*C*T) floats) are not, and are listed as negligible.
``ratios.<name>_saved_bytes`` = saved bytes of C2D + addition / saved bytes of C2D.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench_model import OVERHEAD_MODELS as MODELS, build_ours  # noqa: E402
from cgd_video.utils.atomic import atomic_write_text  # noqa: E402


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves during one training-mode forward of ``model(x)``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params and ptr != x.untyped_storage().data_ptr())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    if "c2d" not in names:
        names.insert(0, "c2d")
    result: dict = {"input": [args.batch, 3, args.frames, args.size, args.size], "torch": torch.__version__,
                    "layouts": {}, "ratios": {},
                    "command": " ".join(["bench_memory.py", *(argv if argv is not None else sys.argv[1:])])}
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    for layout in ("fp32", "channels_last"):
        rows = {}
        for name in names:
            model = build_ours(*MODELS[name], args.frames, "nonlocal32")
            xi = x
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                xi = x.contiguous(memory_format=torch.channels_last_3d)
            rows[name] = saved_bytes(model, xi)
            print(f"{layout:<14}{name:<12}{rows[name] / 2**20:>10.1f} MB saved for backward", flush=True)
        result["layouts"][layout] = rows
        for name in names[1:]:
            result["ratios"][f"{name}_saved_bytes_{layout}"] = rows[name] / rows["c2d"]
    for key, v in result["ratios"].items():
        print(f"{key:<40}{v:.4f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

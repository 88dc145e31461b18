#!/usr/bin/env python
"""What the DDP finiteness agreement costs: one 2-element all-reduce + read per micro-batch vs a DDP step.

    python benchmarks/bench_agree.py --json benchmarks/results/bench_agree_cpu.json

Two processes (gloo on CPU, NCCL with ``--device cuda``) train C2D-R18+CGD on random clips through the
real :class:`cgd_video.engine.train_loop.TrainLoop`, interleaving steps with and without the agreement
(the loop's ``_agree_before_backward`` replaced by a no-op), and time the all-reduce alone too. Reports
the per-step medians and ``ratios.agree_step_over_plain_step`` (1.0 = free).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402


def _worker(rank: int, args, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    from cgd_video.engine import distributed as du
    from cgd_video.engine.train_loop import TrainLoop
    from cgd_video.models import create_model
    from cgd_video.runtime import grad_scaler, resolve_device

    device = resolve_device(args.device)
    du.init_distributed(device.type == "cuda")
    torch.manual_seed(0)
    model = create_model("c2d_r18_cgd", num_classes=4, num_frames=args.frames, layout="pytorchvideo8").to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batch = (torch.randn(args.batch, 3, args.frames, args.size, args.size), torch.randint(0, 4, (args.batch,)))
    prep = lambda b, d: (b[0].to(d), b[1].to(d))  # noqa: E731
    loop = TrainLoop(ddp, torch.optim.SGD(ddp.parameters(), lr=0.01), grad_scaler(device, "none"),
                     lambda e, s: [], prep, device, 1, 1)
    plain = lambda loss, micro: None  # noqa: E731
    times = {"agree": [], "plain": []}
    for i in range(args.steps * 2 + 2):
        kind = "agree" if i % 2 == 0 else "plain"
        loop._agree_before_backward = (TrainLoop._agree_before_backward.__get__(loop) if kind == "agree" else plain)
        du.barrier()
        t0 = time.perf_counter()
        loop.run_step(iter([batch]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times[kind].append(time.perf_counter() - t0)
    flags = torch.zeros(2, device=device)
    ar = []
    for _ in range(args.reduces):
        t0 = time.perf_counter()
        du.all_reduce_tensor(flags, op="max").tolist()
        ar.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}
                                        | {"all_reduce": statistics.median(ar)}))
    dist.destroy_process_group()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=15, help="steps of each kind (interleaved)")
    p.add_argument("--reduces", type=int, default=200)
    p.add_argument("--port", type=int, default=29533)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_agree_{os.getpid()}.json"
    mp.spawn(_worker, args=(args, args.port, str(tmp)), nprocs=2, join=True)
    r = json.loads(tmp.read_text())
    tmp.unlink()
    result = {"device": args.device, "shape": [args.batch, 3, args.frames, args.size, args.size],
              "median_s": r, "ratios": {"agree_step_over_plain_step": r["agree"] / r["plain"]}}
    print(f"{'step with agreement':<24}{r['agree'] * 1e3:>10.2f} ms\n{'step without':<24}{r['plain'] * 1e3:>10.2f} ms\n"
          f"{'2-float all-reduce':<24}{r['all_reduce'] * 1e3:>10.3f} ms\n"
          f"{'ratio':<24}{result['ratios']['agree_step_over_plain_step']:>10.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

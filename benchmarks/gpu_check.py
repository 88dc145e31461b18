#!/usr/bin/env python
"""Every GPU check of issue 14 in one run; ``benchmarks/gpu_check.sh`` is the entry point.

    bash benchmarks/gpu_check.sh OUT_DIR             # on the GPU machine, <= 8 minutes on one H200
    bash benchmarks/gpu_check.sh --dry-run OUT_DIR   # same steps on the CPU at tiny sizes (tests)

Steps, each a subprocess with its own time limit (a failed or timed-out step is recorded and the
next one runs; the slowest, the compiled benchmark, runs last and gets the time that is left):

1. ``env``: torch / CUDA / triton versions, the device;
2. ``data``: synthetic h264 videos (``tools/make_synthetic.py``) and lists (``tools/build_lists.py``);
3. ``pytest_cuda``: ``pytest -m cuda tests/test_cuda_*.py`` (AMP bf16/fp16, channels_last, BN folding,
   CGD's custom backward and Triton kernels on CUDA); ``pytest_cuda_compiled``: compiled vs eager;
4. ``bench_eager``: ``bench_model.py`` bf16 + channels_last (ours / PyTorchVideo forward, CGD / NL /
   CGNL forward and forward + backward overheads, peak memory);
5. ``step_rate``: ``bench_step.py``, optimiser steps on a batch already on the device (clips/s);
6. ``train``: ``tools/train.py`` (public CLI, AMP bf16, channels_last, 8 workers) for a fixed number
   of steps under ``sync_probe.py``: clips/s, data fraction, host syncs per step;
7. ``test``: ``tools/test.py`` with 10 x 3 views from the checkpoint of step 6;
8. ``bench_compiled`` / ``bench_compiled_nl``: ``bench_model.py`` with ``torch.compile`` (bf16 +
   channels_last), training overheads only (one compilation per model): C2D vs CGD, then C2D vs NL / CGNL.

Writes ``OUT_DIR/gpu_check.json`` (every step's status, time and results, and a top-level
``ratios`` / ``figures`` summary) and the per-step JSON files beside it; the log is
``OUT_DIR/gpu_check.log`` (written by the shell script). Large scratch files (videos, checkpoints)
go under ``--work``, not OUT_DIR, so that OUT_DIR stays small enough to copy back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cgd_video.utils.atomic import atomic_write_text  # noqa: E402

BUDGET_S = 480  # the whole run on the GPU: under the 8 minutes of the issue, with start-up to spare

# Sizes of a real run and of --dry-run. The train run is one epoch of exactly steps x batch clips.
SIZES = {
    "gpu": dict(device="cuda", videos=dict(classes=4, videos_per_class=6, frames=80, size="320x240"),
                cfg="ucf101_cgd", train_steps=40, batch=8, workers=8, log_period=10, amp="bf16",
                bench_variant="bf16", step_amp="bf16",
                bench=["--frames", "32", "--size", "224", "--batch", "8", "--pairs", "10", "--warmup", "3"],
                step=["--frames", "32", "--size", "224", "--batch", "8", "--steps", "10", "--rounds", "3"],
                extra_train=[], test_batch=2,
                limits=dict(env=60, data=90, pytest_cuda=120, bench_eager=120, step_rate=90, train=150, test=90)),
    "dry": dict(device="cpu", videos=dict(classes=2, videos_per_class=3, frames=24, size="64x48"),
                cfg="synthetic_cgd", train_steps=3, batch=2, workers=1, log_period=2, amp="bf16",
                bench_variant="channels_last", step_amp="none",  # CPU bf16 kernels are slow: fp32 here
                bench=["--frames", "8", "--ptv-frames", "4", "--size", "32", "--batch", "2", "--pairs", "1",
                       "--warmup", "0", "--threads", "1", "--models", "c2d,cgd_shared"],
                step=["--frames", "8", "--size", "32", "--batch", "2", "--steps", "1", "--rounds", "1",
                      "--warmup", "0"],
                extra_train=["TRAIN.CPU_THREADS", "1", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP", "32",
                             "DATA.TEST_SCALE", "36", "DATA.TEST_CROP", "32", "MODEL.DEPTH", "18"],
                test_batch=1,
                limits=dict(env=60, data=60, pytest_cuda=120, bench_eager=120, step_rate=60, train=120, test=120)),
}


class Check:
    def __init__(self, out: Path, work: Path, dry_run: bool, python: str) -> None:
        self.out, self.work, self.dry, self.py = out, work, dry_run, python
        self.size = SIZES["dry" if dry_run else "gpu"]
        self.t0 = time.perf_counter()
        self.result: dict = {"dry_run": dry_run, "steps": {}, "ratios": {}, "figures": {}}

    # -- plumbing ----------------------------------------------------------------------------------
    def remaining(self) -> float:
        return BUDGET_S - (time.perf_counter() - self.t0)

    def run(self, cmd: Sequence, limit: float, env: dict | None = None) -> dict:
        """Run ``cmd`` from the repository root; its output goes to ours (the log). Never raises."""
        cmd = [str(c) for c in cmd]
        print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, timeout=max(1.0, limit), env={**os.environ, **(env or {})})
            rc, timed_out = proc.returncode, False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
        return {"cmd": cmd, "rc": rc, "timed_out": timed_out, "seconds": round(time.perf_counter() - t0, 2)}

    def step(self, name: str, fn: Callable[[float], dict], limit: float) -> None:
        limit = min(limit, self.remaining()) if not self.dry else limit
        print(f"\n== {name} (limit {limit:.0f} s, {self.remaining():.0f} s of the budget left)", flush=True)
        t0 = time.perf_counter()
        if limit < 5:
            entry = {"status": "skipped", "reason": "out of time budget"}
        else:
            try:
                entry = fn(limit)
            except Exception as e:  # a broken step is recorded; the rest of the check still runs
                entry = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            entry.setdefault("status", _status(entry))
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        self.result["steps"][name] = entry
        print(f"== {name}: {entry['status']} in {entry['seconds']} s", flush=True)
        self.save()

    def save(self) -> None:
        self.result["total_seconds"] = round(time.perf_counter() - self.t0, 2)
        atomic_write_text(self.out / "gpu_check.json", json.dumps(self.result, indent=2) + "\n")

    def load(self, name: str) -> dict | None:
        path = self.out / name
        return json.loads(path.read_text()) if path.is_file() else None

    # -- steps -------------------------------------------------------------------------------------
    def env(self, limit: float) -> dict:
        import torch

        info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
        if torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(0)
            info["capability"] = list(torch.cuda.get_device_capability(0))
            info["memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=limit)
            info["nvidia_smi"] = smi.stdout.strip()
        missing = []
        for mod in ("av", "decord", "yacs", "fvcore", "iopath", "pytorchvideo"):
            try:
                __import__(mod)
            except Exception:
                missing.append(mod)
        info["missing_modules"] = missing
        if not self.dry and not info["cuda_available"]:
            return {"status": "failed", "error": "torch.cuda.is_available() is False", **info}
        return {"status": "ok", **info}

    def data(self, limit: float) -> dict:
        v, data, lists = self.size["videos"], self.work / "data", self.work / "lists"
        runs = [self.run([self.py, "tools/make_synthetic.py", "--out", data, "--classes", v["classes"],
                          "--videos-per-class", v["videos_per_class"], "--frames", v["frames"],
                          "--size", v["size"]], limit)]
        runs.append(self.run([self.py, "tools/build_lists.py", "ucf101", "--splits", data / "splits",
                              "--root", data / "videos", "--out", lists], limit))
        if any(r["rc"] != 0 for r in runs):
            return {"status": "failed", "runs": runs}
        # One training epoch = exactly train_steps x batch clips (videos repeat), so the checkpoint of
        # the timed run exists at its end without a second run.
        train = [line for line in (lists / "train_split1.txt").read_text().splitlines() if line.strip()]
        need = self.size["train_steps"] * self.size["batch"]
        (lists / "train_fixed.txt").write_text("".join(f"{train[i % len(train)]}\n" for i in range(need)))
        return {"status": "ok", "runs": runs, "train_clips": need,
                "test_videos": sum(1 for x in (lists / "test_split1.txt").read_text().splitlines() if x.strip())}

    def pytest_cuda(self, limit: float, select: str) -> dict:
        xml = self.work / f"pytest_{select.replace(' ', '_')}.xml"  # parsed into gpu_check.json
        tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_cuda_*.py"))
        if not tests:
            return {"status": "failed", "error": "no tests/test_cuda_*.py"}
        run = self.run([self.py, "-m", "pytest", "-q", "-m", "cuda", "-k", select, "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *tests], limit)
        counts = _junit_counts(xml)
        status = _status(run)
        if self.dry and run["rc"] == 5:  # no test selected is no failure in a dry run
            status = "ok"
        return {"status": status, **run, **counts}

    def bench(self, limit: float, name: str, variant: str, extra: Sequence[str]) -> dict:
        path = self.out / name
        run = self.run([self.py, "benchmarks/bench_model.py", "--device", self.size["device"], "--variants", variant,
                        *self.size["bench"], *extra, "--json", path], limit)
        res = self.load(name)
        return {**run, "ratios": res["ratios"] if res else None,
                "models": res["variants"][variant]["models"] if res else None}

    def step_rate(self, limit: float) -> dict:
        run = self.run([self.py, "benchmarks/bench_step.py", "--device", self.size["device"],
                        "--amp", self.size["step_amp"], "--channels-last", *self.size["step"],
                        "--json", self.out / "step_rate.json"], limit)
        return {**run, **(self.load("step_rate.json") or {})}

    def _data_opts(self) -> list:
        lists = self.work / "lists"
        return ["MODEL.NUM_CLASSES", self.size["videos"]["classes"], "DATA.ROOT", self.work / "data" / "videos",
                "DATA.TRAIN_LIST", lists / "train_fixed.txt", "DATA.VAL_LIST", lists / "test_split1.txt",
                "DATA.TEST_LIST", lists / "test_split1.txt", "DATA.CLASSES", lists / "classes.txt",
                "TRAIN.DEVICE", self.size["device"], "TRAIN.AMP", self.size["amp"], "TRAIN.CHANNELS_LAST", "True",
                "DATALOADER.NUM_WORKERS", self.size["workers"], *self.size["extra_train"]]

    def train(self, limit: float) -> dict:
        s = self.size
        run_dir = self.work / "train"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resume
        opts = [*self._data_opts(), "OUTPUT_DIR", run_dir, "TRAIN.BATCH_SIZE", s["batch"], "SOLVER.MAX_EPOCH", 1,
                "TRAIN.EVAL_PERIOD", 0, "TRAIN.LOG_PERIOD", s["log_period"], "TRAIN.CHECKPOINT_ITERS", 0,
                "TRAIN.AUTO_RESUME", "False"]
        run = self.run([self.py, "benchmarks/sync_probe.py", "--json", self.out / "train_probe.json",
                        "--batch", s["batch"], "--skip", min(3, s["train_steps"] - 2), "--log-period", s["log_period"],
                        "--", "tools/train.py", "--cfg", s["cfg"], *opts], limit)
        probe = self.load("train_probe.json") or {}
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file():  # the trainer's own records, kept in the JSON (last 5 lines)
            probe["trainer_metrics_tail"] = metrics.read_text().splitlines()[-5:]
        ok = run["rc"] == 0 and probe.get("steps") == s["train_steps"]
        return {**run, "status": "ok" if ok else _status(run, "failed"), **probe}

    def test(self, limit: float) -> dict:
        ckpt = self.work / "train" / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            return {"status": "skipped", "reason": f"no checkpoint {ckpt} (the train step failed)"}
        test_dir = self.work / "test"
        run = self.run([self.py, "tools/test.py", "--cfg", self.size["cfg"], "--ckpt", ckpt, *self._data_opts(),
                        "OUTPUT_DIR", test_dir, "TEST.NUM_CLIPS", 10, "TEST.NUM_CROPS", 3,
                        "TEST.BATCH_SIZE", self.size["test_batch"]], limit)
        res_path = test_dir / "test_results.json"
        res = json.loads(res_path.read_text()) if res_path.is_file() else {}
        videos = res.get("num_videos")
        return {**run, "num_videos": videos, "views": res.get("views"), "top1": res.get("top1"),
                "videos_per_s_incl_startup": (videos / run["seconds"]) if videos else None}

    # -- summary -----------------------------------------------------------------------------------
    def summarise(self) -> None:
        steps, ratios, figures = self.result["steps"], self.result["ratios"], self.result["figures"]
        for name, tag in (("bench_eager", "eager"), ("bench_compiled", "compiled"), ("bench_compiled_nl", "compiled")):
            bench = steps.get(name, {})
            for key, value in (bench.get("ratios") or {}).items():
                ratios.setdefault(f"{key}_{tag}", value)
            models = bench.get("models") or {}
            c2d, cgd = models.get("c2d", {}), models.get("cgd_shared", {})
            if c2d.get("train_peak_bytes") and cgd.get("train_peak_bytes"):
                ratios[f"cgd_shared_train_peak_memory_{tag}"] = cgd["train_peak_bytes"] / c2d["train_peak_bytes"]
        best = [ratios.get(f"cgd_shared_overhead_train_{t}") for t in ("eager", "compiled")]
        best = [b for b in best if b is not None]
        if best:
            ratios["cgd_shared_overhead_train_best"] = min(best)
        rate = steps.get("step_rate", {})
        if rate.get("ratios"):
            ratios["cgd_shared_step_time_model_only"] = rate["ratios"]["cgd_shared_step_time"]
            figures["model_only_clips_per_s"] = rate.get("clips_per_s")
        train = steps.get("train", {})
        for key in ("clips_per_s", "data_fraction", "host_syncs_between_logging_steps_max", "host_syncs_total"):
            figures[f"train_{key}"] = train.get(key)
        figures["test_videos_per_s_incl_startup"] = steps.get("test", {}).get("videos_per_s_incl_startup")
        figures["failed_steps"] = sorted(k for k, v in steps.items() if v["status"] not in ("ok", "skipped"))


def _status(run: dict, failed: str = "failed") -> str:
    if run.get("timed_out"):
        return "timeout"
    return "ok" if run.get("rc") == 0 else failed


def _junit_counts(xml: Path) -> dict:
    """Counts of a pytest junit XML, and each failed test's id with the first 300 characters of why."""
    if not xml.is_file():
        return {}
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    failed = {}
    for case in suite.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed[f"{case.get('classname')}::{case.get('name')}"] = (bad.get("message") or "")[:300]
    return {**{k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}, "failed": failed}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="OUT_DIR: gpu_check.json and the per-step results")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the same steps, for the tests")
    ap.add_argument("--work", type=Path, help="scratch folder for videos and checkpoints (default: a temp dir)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"cgd_gpu_check_{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    check = Check(args.out.resolve(), work.resolve(), args.dry_run, sys.executable)
    lim = check.size["limits"]
    check.step("env", check.env, lim["env"])
    check.step("data", check.data, lim["data"])
    # the inductor test on its own, so that a slow compilation cannot take the other results with it
    check.step("pytest_cuda", lambda t: check.pytest_cuda(t, "not compiled"), lim["pytest_cuda"])
    check.step("pytest_cuda_compiled", lambda t: check.pytest_cuda(t, "compiled"), lim["pytest_cuda"])
    check.step("bench_eager", lambda t: check.bench(t, "bench_model_eager.json", check.size["bench_variant"], []), lim["bench_eager"])
    check.step("step_rate", check.step_rate, lim["step_rate"])
    check.step("train", check.train, lim["train"])
    check.step("test", check.test, lim["test"])
    if args.dry_run:  # inductor on the CPU takes minutes per model: the compiled variant is GPU-only
        for name in ("bench_compiled", "bench_compiled_nl"):
            check.result["steps"][name] = {"status": "skipped", "reason": "dry run (CPU)"}
    else:
        # CGD first (the target), then NL / CGNL beside it if time is left (c2d again: inductor's cache)
        for name, models in (("bench_compiled", "c2d,cgd_shared"), ("bench_compiled_nl", "c2d,nl,cgnl")):
            check.step(name, lambda t, n=name, m=models: check.bench(
                t, f"{n.replace('bench_', 'bench_model_')}.json", "compile",
                ["--no-ptv", "--modes", "train", "--models", m, "--pairs", "6"]), 600)
    check.summarise()
    check.save()
    print("\n" + render(check.result))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not [k for k, v in check.result["steps"].items() if v["status"] not in ("ok", "skipped")] else 1


def render(result: dict) -> str:
    lines = [f"{'step':<22}{'status':<10}{'seconds':>9}"]
    lines += [f"{k:<22}{v['status']:<10}{v['seconds'] if 'seconds' in v else '-':>9}" for k, v in result["steps"].items()]
    lines.append("ratios:")
    lines += [f"  {k:<48}{v:.3f}" for k, v in result["ratios"].items() if isinstance(v, (int, float))]
    lines.append("figures:")
    lines += [f"  {k:<48}{v}" for k, v in result["figures"].items()]
    lines.append(f"total {result.get('total_seconds')} s{'  (dry run)' if result['dry_run'] else ''}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

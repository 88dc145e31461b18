"""benchmarks/gpu_check.sh: the one-command GPU check, run end to end in --dry-run (CPU, tiny sizes) so that
it cannot rot between the sessions that have a GPU; and the host-sync accounting of benchmarks/sync_probe.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"env", "data", "pytest_cuda", "pytest_cuda_compiled", "bench_eager", "step_rate", "train", "test", "bench_compiled",
         "bench_compiled_nl"}


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-4000:]
    result = json.loads((out / "gpu_check.json").read_text())
    steps = result["steps"]
    assert result["dry_run"] is True and set(steps) == STEPS
    bad = {k: v for k, v in steps.items() if v["status"] != "ok" and not k.startswith("bench_compiled")}
    assert not bad, json.dumps(bad, indent=1)[-3000:]
    assert steps["bench_compiled"]["status"] == steps["bench_compiled_nl"]["status"] == "skipped"  # GPU only
    train = steps["train"]
    assert train["exit_status"] == 0 and train["steps"] == 3 and train["clips_per_s"] > 0
    assert 0 <= train["data_fraction"] <= 1 and train["host_syncs_per_step"] is None  # no CUDA to count
    assert steps["test"]["num_videos"] >= 1 and steps["test"]["views"] is not None
    ratios = result["ratios"]
    for key in ("ours_vs_pytorchvideo_forward_eager", "cgd_shared_overhead_train_eager",
                "cgd_shared_train_peak_memory_eager", "cgd_shared_step_time_model_only"):
        assert ratios[key] > 0, key
    assert result["figures"]["failed_steps"] == []
    # what the device tool copies back: at most 8 plain files, nothing large
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).is_file() and (out / f).stat().st_size < 16 * 2**20 for f in files)
    assert "gpu_check.json" in files and "gpu_check.log" in files


def test_gpu_check_usage_error():
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("usage: benchmarks/gpu_check.sh")


def test_sync_probe_counts_syncs_between_logging_steps():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sync_probe

    probe = sync_probe.Probe()
    # steps 1..6 with LOG_PERIOD 3: syncs after step 3 (a logging step) are allowed, after step 4 are not
    plan = {0: 2, 3: 1, 4: 2}  # syncs before step i+1, i.e. after step i (0 = set-up before step 1)
    for i in range(6):
        for _ in range(plan.get(i, 0)):
            probe.pending += 1
        probe.step()
    summary = sync_probe.summary(probe, batch=4, skip=1, log_period=3, cuda=True)
    assert summary["host_syncs_per_step"] == [2, 0, 0, 1, 2, 0]
    assert summary["host_syncs_between_logging_steps_max"] == 2  # the 2 after step 4
    assert summary["host_syncs_total"] == 5 and summary["steps"] == 6
    assert summary["clips_per_s"] > 0 and 0 <= summary["data_fraction"] <= 1

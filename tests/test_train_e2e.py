"""End to end on synthetic videos: train -> SIGTERM -> resume -> SIGKILL -> resume -> test.

The run interrupted twice ends with the same weights as an uninterrupted one (max abs diff <= 1e-6);
an incompatible checkpoint is refused; a non-finite loss stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cgd_video.config import load_config
from cgd_video.engine.checkpoint import CheckpointError, load_checkpoint
from cgd_video.boundary.evaluation import run_test_from_config as run_test
from cgd_video.boundary.training import train_from_config as train
from cgd_video.engine.train_loop import NonFiniteLossError

from _train_helpers import PYTHON, REPO, subprocess_env, tiny_opts, write_tiny_lists


@pytest.fixture(scope="module")
def lists(synthetic_dataset, tmp_path_factory):
    return write_tiny_lists(synthetic_dataset, tmp_path_factory.mktemp("lists"))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # same reduction order as the OMP_NUM_THREADS=1 subprocesses
    yield
    torch.set_num_threads(n)


def _iteration(ckpt: Path) -> int:
    try:
        return int(load_checkpoint(ckpt)["iteration"])
    except Exception:  # noqa: BLE001 - not written yet
        return -1


def _start_and_signal(opts, ckpt: Path, at_least: int, sig: int, timeout: float = 120) -> subprocess.CompletedProcess:
    env = subprocess_env()
    # tools/train.py's entry point with a hook that slows every step, so the signal lands mid-run
    proc = subprocess.Popen([PYTHON, str(REPO / "tests" / "_train_with_hooks.py"), "--sleep", "0.4",
                             "--cfg", "synthetic_cgd", *opts],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while _iteration(ckpt) < at_least:
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be interrupted:\n{proc.stderr.read()[-3000:]}")
            if time.time() > deadline:
                pytest.fail("training did not reach the checkpoint in time")
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _weights(path: Path):
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_interrupted_runs_match_uninterrupted(lists, synthetic_dataset, tmp_path):
    ref_dir, int_dir = tmp_path / "ref", tmp_path / "interrupted"
    ref = train(load_config("synthetic_cgd", tiny_opts(lists, synthetic_dataset, ref_dir)))
    assert ref["status"] == "finished" and ref["iteration"] == 8  # 8 videos / batch 2 = 4 steps x 2 epochs

    opts = tiny_opts(lists, synthetic_dataset, int_dir)
    ckpt = int_dir / "checkpoints" / "last.pt"
    # 1) SIGTERM (preemption) mid epoch 1: saves last.pt and exits cleanly
    term = _start_and_signal(opts, ckpt, at_least=2, sig=signal.SIGTERM)
    assert term.returncode == 0, term.stderr[-3000:]
    assert "SIGTERM" in term.stdout
    stopped_at = _iteration(ckpt)
    assert 2 <= stopped_at < 8
    # 2) resumed, then SIGKILL at an arbitrary moment after at least one more step
    kill = _start_and_signal(opts, ckpt, at_least=stopped_at + 2, sig=signal.SIGKILL)
    assert kill.returncode == -signal.SIGKILL and "resumed from" in kill.stderr
    killed_at = _iteration(ckpt)
    assert stopped_at < killed_at < 8, "the kill must land before the end of training"
    # 3) resume to the end in this process
    done = train(load_config("synthetic_cgd", opts))
    assert done["status"] == "finished" and done["iteration"] == 8

    a, b = _weights(ref_dir / "checkpoints" / "last.pt"), _weights(ckpt)
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert diff <= 1e-6, f"resumed weights differ from uninterrupted ones by {diff}"
    moved = load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    assert moved["epoch"] == 2 and moved["classes"][0] and "MODEL:" in moved["cfg"]

    # metrics.jsonl and config.yaml were written
    lines = [json.loads(x) for x in (int_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["type"] for r in lines} >= {"train", "epoch"}
    assert load_config(int_dir / "config.yaml") == load_config("synthetic_cgd", opts)

    # test: 2 clips x 3 crops per video, outputs written
    summary, res = run_test(load_config("synthetic_cgd", opts), progress=False)
    assert summary["num_videos"] == 4 and summary["num_failed"] == 0
    assert summary["views"] == {"num_clips": 2, "num_crops": 3, "per_video": 6}
    torch.testing.assert_close(res.scores.sum(1), torch.ones(4))  # mean of softmaxes
    on_disk = json.loads((int_dir / "test_results.json").read_text())
    assert on_disk["top1"] == summary["top1"] and on_disk["checkpoint"] == str(ckpt)
    assert len((int_dir / "predictions.csv").read_text().splitlines()) == 5
    assert (int_dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    # 4) an incompatible model in the same OUTPUT_DIR is refused, naming the key
    with pytest.raises(CheckpointError, match=r"MODEL\.ATTENTION"):
        train(load_config("synthetic_cgd", opts + ["MODEL.ATTENTION", "none", "SOLVER.MAX_EPOCH", "3"]))
    with pytest.raises(CheckpointError, match=r"SOLVER\.BASE_LR"):
        train(load_config("synthetic_cgd", opts + ["SOLVER.BASE_LR", "0.5", "SOLVER.MAX_EPOCH", "3"]))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(lists, synthetic_dataset, tmp_path):
    out = tmp_path / "nan"
    cfg = load_config("synthetic_cgd", tiny_opts(lists, synthetic_dataset, out, **{
        "SOLVER.BASE_LR": 1e25, "SOLVER.WARMUP_EPOCHS": 0.0, "MODEL.ATTENTION": "none", "MODEL.DROPOUT": 0.0}))
    with pytest.raises(NonFiniteLossError, match=r"at iteration (\d+)") as e:
        train(cfg)
    it = int(re.search(r"at iteration (\d+)", str(e.value)).group(1))
    ckpt = out / "checkpoints" / "last.pt"
    assert it >= 2 and ckpt.is_file() and str(ckpt) in str(e.value)
    state = load_checkpoint(ckpt)
    assert state["iteration"] == it - 1  # the last step that finished with a finite loss

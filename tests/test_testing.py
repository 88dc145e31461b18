"""tools/test.py's run: both accuracies in test_results.json (TEST.FAILED_AS_WRONG counts an undecodable
video as wrong), and under a 2-process gloo torchrun the summary is printed exactly once (rank 0)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from cgd_video.boundary.evaluation import load_for_eval, run_test_from_config
from cgd_video.data.lists import VideoRecord, read_video_list, write_video_list

from _train_helpers import PYTHON, REPO, subprocess_env, write_tiny_lists
from test_predictor import make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt", seed=3)


@pytest.fixture
def five_videos(synthetic_dataset, bad_videos, tmp_path) -> Path:
    """The 4 synthetic test videos (one per class) plus a truncated one labelled class 1."""
    lists = write_tiny_lists(synthetic_dataset, tmp_path / "lists")
    records = read_video_list(lists / "test_split1.txt") + [VideoRecord(str(bad_videos["truncated"]), 1)]
    return write_video_list(tmp_path / "test5.txt", records)


def _opts(synthetic_dataset, five_videos, out: Path, *extra: str) -> list:
    return ["DATA.ROOT", str(synthetic_dataset / "videos"), "DATA.TEST_LIST", str(five_videos), "OUTPUT_DIR", str(out),
            "TEST.NUM_CLIPS", "1", "TEST.NUM_CROPS", "1", *extra]


def test_failed_as_wrong_reports_both_accuracies(tiny_ckpt, synthetic_dataset, five_videos, tmp_path):
    results = {}
    for strict in ("False", "True"):
        out = tmp_path / strict
        cfg, path, state = load_for_eval(tiny_ckpt, None, _opts(synthetic_dataset, five_videos, out,
                                                                 "TEST.FAILED_AS_WRONG", strict))
        summary, res = run_test_from_config(cfg, path, state, progress=False)
        on_disk = json.loads((out / "test_results.json").read_text())
        assert on_disk == json.loads(json.dumps(summary)) and on_disk["failed_as_wrong"] == (strict == "True")
        results[strict] = on_disk
        rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    # oracle: count from predictions.csv (path, label, status, top1 name) with the class names in the checkpoint
    right = sum(r["status"] == "ok" and r["top1"] == r["label_name"] for r in rows)
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["error"] and rows[-1]["label"] == "1"
    lax, strict = results["False"], results["True"]
    for r in (lax, strict):
        assert r["num_videos"] == 5 and r["num_failed"] == 1 and r["failed_paths"][0].endswith("truncated.mp4")
        assert r["top1_decoded"] == pytest.approx(right / 4) and r["top1_failed_as_wrong"] == pytest.approx(right / 5)
    assert lax["top1"] == lax["top1_decoded"] and strict["top1"] == strict["top1_failed_as_wrong"]
    assert strict["top5_failed_as_wrong"] == pytest.approx(4 / 5)  # 4 classes: every decoded video is in its top 5


@pytest.mark.slow
def test_torchrun_test_prints_the_summary_once(tiny_ckpt, synthetic_dataset, five_videos, tmp_path):
    out = tmp_path / "ddp"
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tools" / "test.py"), "--ckpt", str(tiny_ckpt), *_opts(synthetic_dataset, five_videos, out),
           "DATALOADER.NUM_WORKERS", "0", "TRAIN.DEVICE", "cpu"]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    summaries = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, run.stdout
    assert run.stdout.count("wrote ") == 1
    printed = json.loads(summaries[0])
    on_disk = json.loads((out / "test_results.json").read_text())
    assert printed["num_videos"] == on_disk["num_videos"] == 5 and printed["top1"] == on_disk["top1"]


def test_eval_settings_one_rule_for_test_and_infer():
    """AMP applies on CUDA only (a CPU evaluates in float32, whatever TRAIN.AMP says); unknown modes and
    devices are refused naming the choices."""
    from cgd_video.boundary.evaluation import eval_settings
    from cgd_video.config import load_config

    cfg = load_config(None, ["TRAIN.AMP", "bf16", "TEST.BATCH_SIZE", "3", "DATALOADER.NUM_WORKERS", "1"])
    s = eval_settings(cfg, device="cpu")
    assert (s["device"].type, s["amp"], s["batch_size"], s["num_workers"]) == ("cpu", "none", 3, 1)
    assert eval_settings(cfg, device="cpu", batch_size=5, num_workers=0)["batch_size"] == 5
    with pytest.raises(ValueError, match="bf16"):
        eval_settings(cfg, device="cpu", amp="int8")
    with pytest.raises(ValueError, match="cpu"):
        eval_settings(cfg, device="tpu")

"""2-process torchrun on CPU (gloo): DDP training runs, and its multi-view test equals the single-process
test exactly (indices sharded rank::world without sampler padding, gathered by index)."""

from __future__ import annotations

import json
import subprocess

import pytest

from cgd_video.engine.distributed import shard_indices

from _train_helpers import PYTHON, REPO, subprocess_env, tiny_opts, write_tiny_lists


@pytest.mark.parametrize("n, world", [(5, 2), (4, 2), (7, 3), (1, 2), (0, 2)])
def test_shards_cover_every_index_once(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))


def _torchrun(script: str, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(REPO / "tools" / script), *args]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_gloo_train_and_test_equal_single_process(synthetic_dataset, tmp_path):
    lists = write_tiny_lists(synthetic_dataset, tmp_path / "lists")
    # 5 test videos: an odd count, so padding (DistributedSampler) would duplicate one
    test_lines = (lists / "test_split1.txt").read_text().splitlines() + \
        (lists / "train_split1.txt").read_text().splitlines()[:1]
    (lists / "test5.txt").write_text("\n".join(test_lines) + "\n")
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    opts = tiny_opts(lists, synthetic_dataset, ddp_dir, **{"SOLVER.MAX_EPOCH": 1, "TRAIN.CHECKPOINT_ITERS": 0,
                                                             "DATA.TEST_LIST": lists / "test5.txt"})
    train = _torchrun("train.py", ["--cfg", "synthetic_cgd", *opts])
    assert train.returncode == 0, train.stderr[-4000:]
    assert "2 processes" in train.stderr  # logged by rank 0: DDP really ran with world size 2
    ckpt = ddp_dir / "checkpoints" / "last.pt"
    test = _torchrun("test.py", ["--cfg", "synthetic_cgd", "--ckpt", str(ckpt), *opts])
    assert test.returncode == 0, test.stderr[-4000:]
    single_opts = opts[:opts.index("OUTPUT_DIR")] + ["OUTPUT_DIR", str(single_dir)] + opts[opts.index("OUTPUT_DIR") + 2:]
    one = subprocess.run([PYTHON, str(REPO / "tools" / "test.py"), "--cfg", "synthetic_cgd", "--ckpt", str(ckpt),
                          *single_opts], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-4000:]
    ddp = json.loads((ddp_dir / "test_results.json").read_text())
    single = json.loads((single_dir / "test_results.json").read_text())
    assert ddp["num_videos"] == single["num_videos"] == 5
    for k in ("top1", "top5", "mean_class_acc", "num_failed", "views", "checkpoint"):
        assert ddp[k] == single[k], k
    # per-video rows (path, label, top-k with scores) identical, none duplicated or lost
    assert (ddp_dir / "predictions.csv").read_text() == (single_dir / "predictions.csv").read_text()

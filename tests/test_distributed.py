"""2-process torchrun on CPU (gloo): DDP training runs, and its multi-view test equals the single-process
test exactly (indices sharded rank::world without sampler padding, gathered by index)."""

from __future__ import annotations

import json
import subprocess

import pytest

from torch.utils.data import DistributedSampler

from cgd_video.engine.distributed import epoch_order, shard_indices, train_shard

from _train_helpers import PYTHON, REPO, subprocess_env, tiny_opts, write_tiny_lists


@pytest.mark.parametrize("n, world", [(5, 2), (4, 2), (7, 3), (1, 2), (0, 2)])
def test_shards_cover_every_index_once(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))


def test_train_shards_are_distributed_samplers_and_survive_a_world_size_change():
    n, per_step, seed, epoch = 23, 3, 5, 2
    order = epoch_order(n, seed, epoch)
    for world in (1, 2, 3):
        steps = n // (per_step * world)
        for rank in range(world):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                         drop_last=True)
            sampler.set_epoch(epoch)
            assert train_shard(order, 0, rank, world, steps, per_step) == list(sampler)[: steps * per_step]
    # 2 processes run 2 of their 3 steps, then the run resumes with 3 processes (elastic)
    seen = [i for r in range(2) for i in train_shard(order, 0, r, 2, 2, per_step)]
    assert sorted(seen) == sorted(order[:12])  # the first k*world samples of the epoch order
    remaining_steps = (n - len(seen)) // (per_step * 3)
    after = [i for r in range(3) for i in train_shard(order, len(seen), r, 3, remaining_steps, per_step)]
    assert len(after) == remaining_steps * per_step * 3 == 9
    assert len(set(seen + after)) == len(seen) + len(after)  # nothing seen twice
    assert sorted(seen + after) == sorted(order[:21])  # nothing skipped but the last partial step


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

"""Issue 10's training-side defects, each with a test that fails on the old engine:
1 presets, 2 NaN on one DDP rank, 3 rank-reduced logs, 5 config.yaml only once accepted, 6 one-line input
errors, 7 stale temporaries, 8 metrics after a resume, 9 umask; issue 13 item 3 (the PRETRAINED warning)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from cgd_video.boundary.model import (ModelConfigError, arch_keys, bn_cancels_cgd_warning, build_model, model_kwargs,
                                      pretrained_warning)
from cgd_video.boundary.training import build_job, main, train_from_config
from cgd_video.config import load_config
from cgd_video.engine.checkpoint import CheckpointError, load_checkpoint
from cgd_video.engine.writers import read_metrics
from cgd_video.utils.atomic import atomic_write_text

from _train_helpers import PYTHON, REPO, subprocess_env, tiny_opts, write_tiny_lists


@pytest.fixture(scope="module")
def lists(synthetic_dataset, tmp_path_factory):
    return write_tiny_lists(synthetic_dataset, tmp_path_factory.mktemp("lists"))


def _n_cgd(model) -> int:
    return sum(type(m).__name__ == "CGD" for m in model.modules())


# -- defect 1 -------------------------------------------------------------------------------------------
def test_preset_name_builds_its_preset():
    model = build_model(load_config("synthetic_c2d", ["MODEL.NAME", "c2d_r18_cgd"]))
    assert _n_cgd(model) == 8  # one per BasicBlock of ResNet-18 (the old code built zero)
    conv2 = model_kwargs(load_config("ucf101_c2d", ["MODEL.NAME", "c2d_r50_cgd_conv2"]))
    assert conv2["attention"] == "cgd" and conv2["attention_position"] == "conv2"
    arch = arch_keys(load_config("ucf101_c2d", ["MODEL.NAME", "c2d_r18_cgd"]))
    assert arch["MODEL.DEPTH"] == 18 and arch["MODEL.ATTENTION"] == "cgd"  # what was built is recorded


@pytest.mark.parametrize("cfg, opts, keys", [
    ("ucf101_cgd", ["MODEL.NAME", "c2d_r50_nl"], ("c2d_r50_nl", "MODEL.ATTENTION")),
    ("synthetic_c2d", ["MODEL.NAME", "c2d_r50_cgd"], ("c2d_r50_cgd", "MODEL.DEPTH")),
    ("ucf101_c2d", ["MODEL.NAME", "c2d_r50_cgd", "MODEL.CGD_POSITION", "conv2"], ("c2d_r50_cgd", "MODEL.CGD_POSITION")),
])
def test_contradicting_key_names_both(cfg, opts, keys):
    with pytest.raises(ModelConfigError) as e:
        model_kwargs(load_config(cfg, opts))
    assert all(k in str(e.value) for k in keys)


def test_spatial_cgd_is_built_for_the_training_crop():
    """The height/width forms (Fig. 4b/c) are sized per block from DATA.TRAIN_CROP; other models ignore it."""
    opts = ["DATA.TRAIN_CROP", "64", "DATA.NUM_FRAMES", "8", "MODEL.LAYOUT", "pytorchvideo8"]
    cfg = load_config("ucf101_cgd_height", opts)
    assert model_kwargs(cfg)["input_size"] == 64 and arch_keys(cfg)["DATA.TRAIN_CROP"] == 64
    with torch.no_grad():
        assert build_model(cfg, load_pretrained=False).eval()(torch.randn(1, 3, 8, 64, 64)).shape == (1, 101)
    channel = load_config("ucf101_cgd", opts)
    assert "input_size" not in model_kwargs(channel) and "DATA.TRAIN_CROP" not in arch_keys(channel)


# -- issue 13 item 3 ------------------------------------------------------------------------------------
def test_paper_configs_warn_without_imagenet_weights(lists, synthetic_dataset, tmp_path):
    assert "ImageNet" in pretrained_warning(load_config("ucf101_cgd"))
    assert pretrained_warning(load_config("ucf101_cgd", ["MODEL.PRETRAINED", "none"])) is None
    opts = tiny_opts(lists, synthetic_dataset, tmp_path)
    assert any("ImageNet" in w for w in build_job(load_config("synthetic_cgd", opts + ["MODEL.PRETRAINED", '""'])).warnings)
    assert build_job(load_config("synthetic_cgd", opts)).warnings == []


def test_one_clip_per_batchnorm_warns_that_cgd_is_cancelled():
    """With one clip per training BN, CGD's per-(clip, channel) scale is divided out: the output equals the
    model without CGD and CGD's weights get no gradient. The run says so; 2+ clips, SyncBN or a per-frame
    scale (frame / concat), which BN cannot divide out, silence it."""
    one = ["TRAIN.BATCH_SIZE", "1", "MODEL.PRETRAINED", "none"]
    for temporal in ("mean", "shared"):
        assert "divides CGD's per-channel scale out" in bn_cancels_cgd_warning(
            load_config("ucf101_cgd", one + ["MODEL.CGD_TEMPORAL", temporal]))
    for extra in (["TRAIN.BATCH_SIZE", "2"], ["TRAIN.SYNC_BN", "True"], ["MODEL.CGD_TEMPORAL", "frame"],
                  ["MODEL.CGD_TEMPORAL", "concat"]):
        assert bn_cancels_cgd_warning(load_config("ucf101_cgd", one + extra)) is None
    assert bn_cancels_cgd_warning(load_config("ucf101_c2d", one)) is None
    # the fact the warning states, on the model the config builds
    cfg = load_config("ucf101_cgd", one + ["MODEL.DEPTH", "18", "MODEL.DROPOUT", "0.0"])
    torch.manual_seed(0)
    cgd = build_model(cfg, load_pretrained=False).train()
    plain = build_model(load_config("ucf101_c2d", one + ["MODEL.DEPTH", "18", "MODEL.DROPOUT", "0.0"]),
                        load_pretrained=False).train()
    plain.load_state_dict({k: v for k, v in cgd.state_dict().items() if ".attn." not in k})
    x = torch.randn(1, 3, 8, 64, 64)
    out = cgd(x)
    torch.testing.assert_close(out, plain(x), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert max(p.grad.abs().max().item() for n, p in cgd.named_parameters() if ".attn." in n) < 1e-2


# -- defect 6 (train side) ------------------------------------------------------------------------------
def _run_main(opts, capsys) -> tuple[int, str]:
    rc = main(["--cfg", "synthetic_cgd", *opts])
    return rc, capsys.readouterr().err.strip()


def test_bad_inputs_are_one_line_exit_2(lists, synthetic_dataset, tmp_path, capsys):
    good = (lists / "train_split1.txt").read_text().splitlines()
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("\n".join(good[:3] + ["Class0/no_label.mp4"] + good[3:]) + "\n")
    far_label = tmp_path / "far.txt"
    far_label.write_text("\n".join(good[:5] + ["Class0/a.mp4 7"] + good[5:]) + "\n")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    empty = tmp_path / "empty_root"
    empty.mkdir()
    cases = [
        (["DATA.TRAIN_LIST", bad_list], [f"{bad_list}:4", "DATA.TRAIN_LIST"]),
        (["DATA.TRAIN_LIST", far_label], [f"{far_label}:6", "label"]),
        (["MODEL.PRETRAINED", tmp_path / "missing.pth"], ["MODEL.PRETRAINED", "missing.pth"]),
        (["MODEL.PRETRAINED", wrong], ["MODEL.PRETRAINED", "conv1.weight"]),
        (["DATA.ROOT", empty], ["DATA.ROOT", str(empty)]),
        (["TRAIN.ACCUM_STEPS", 0], ["TRAIN.ACCUM_STEPS", "at least 1"]),
        (["TRAIN.BATCH_SIZE", 0], ["TRAIN.BATCH_SIZE", "at least 1"]),
        (["TRAIN.PRECISE_BN_BATCHES", -3], ["TRAIN.PRECISE_BN_BATCHES", "-3"]),
    ]
    for extra, needles in cases:
        out = tmp_path / f"out_{len(needles)}_{extra[0]}_{extra[1]}".replace("/", "_")
        rc, err = _run_main(tiny_opts(lists, synthetic_dataset, out) + [str(x) for x in extra], capsys)
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert all(n in err for n in needles), err
        assert not out.exists()  # nothing written for a refused run


# -- defects 5, 7, 8 ------------------------------------------------------------------------------------
def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_refused_run_changes_nothing_and_resume_cleans_up(lists, synthetic_dataset, tmp_path):
    out = tmp_path / "run"
    opts = tiny_opts(lists, synthetic_dataset, out, **{"TRAIN.CHECKPOINT_ITERS": 2, "TRAIN.STOP_AFTER_ITERS": 3,
                                                       "MODEL.ATTENTION": "none", "SOLVER.MAX_EPOCH": 1})
    first = train_from_config(load_config("synthetic_cgd", opts))
    assert first["status"] == "stop_after_iters" and load_checkpoint(out / "checkpoints" / "last.pt")["iteration"] == 2
    assert first["checkpoint"] == str(out / "checkpoints" / "last.pt")  # the summary names what was kept
    unsaved = train_from_config(load_config("synthetic_cgd", tiny_opts(
        lists, synthetic_dataset, tmp_path / "unsaved",
        **{"TRAIN.STOP_AFTER_ITERS": 1, "TRAIN.CHECKPOINT_ITERS": 0, "MODEL.ATTENTION": "none"})))
    assert unsaved["checkpoint"] is None and not (tmp_path / "unsaved" / "checkpoints" / "last.pt").exists()
    train_iters = [r["iteration"] for r in read_metrics(out / "metrics.jsonl")["train"]]
    assert train_iters == [1, 2, 3]  # step 3 was logged but not saved
    # defect 5: a refused resume (changed BASE_LR) leaves the folder exactly as it was
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match=r"SOLVER\.BASE_LR"):
        train_from_config(load_config("synthetic_cgd", opts + ["SOLVER.BASE_LR", "0.5"]))
    assert _snapshot(out) == before
    # defect 7: stale temporaries of our naming go; other files stay
    stale = [out / "checkpoints" / ".last.pt.k3j_x9a1.tmp", out / ".config.yaml.abcdefgh.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    (out / "notes.tmp").write_text("mine")
    # defect 8: the resumed run repeats step 3; each step is recorded once
    done = train_from_config(load_config("synthetic_cgd", opts[:-2] + ["TRAIN.STOP_AFTER_ITERS", "0"]))
    assert done["status"] == "finished" and done["iteration"] == 4
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["type"] == "train"] == [1, 2, 3, 4]
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")["epoch"]] == [4]


# -- defect 9 -------------------------------------------------------------------------------------------
def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
        assert p.stat().st_mode & 0o777 == 0o640  # was 0o600 (mkstemp)
        os.chmod(p, 0o664)
        atomic_write_text(p, "y")  # replacing a file keeps its mode, as open("w") would
        assert p.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


# -- defects 2 and 3: a real 2-process gloo run -----------------------------------------------------------
@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_and_logs_are_rank_reduced(lists, synthetic_dataset, tmp_path):
    out, losses = tmp_path / "ddp", tmp_path / "losses"
    losses.mkdir()
    opts = tiny_opts(lists, synthetic_dataset, out, **{"MODEL.ATTENTION": "none", "TRAIN.CHECKPOINT_ITERS": 1})
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "_train_with_hooks.py"), "--nan-rank", "1", "--nan-iter", "3",
           "--losses", str(losses), "--rc-file", str(tmp_path / "rc"), "--cfg", "synthetic_cgd", *opts]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert "collective mismatch" not in proc.stderr
    rcs = [(tmp_path / f"rc.{r}").read_text() for r in (0, 1)]
    assert rcs == ["3", "3"], proc.stderr[-3000:]  # every rank ends with the non-finite status
    assert "non-finite loss at iteration 3" in proc.stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["iteration"] == 2  # the last good one, loadable
    # defect 3: each logged loss is the mean over both ranks of that step's loss
    per_rank = [dict(line.split() for line in (losses / f"rank{r}.txt").read_text().splitlines()) for r in (0, 1)]
    train = read_metrics(out / "metrics.jsonl")["train"]
    assert [r["iteration"] for r in train] == [1, 2]
    for rec in train:
        it = str(rec["iteration"])
        expected = (float(per_rank[0][it]) + float(per_rank[1][it])) / 2
        assert rec["loss"] == pytest.approx(expected, rel=1e-6)
        assert float(per_rank[0][it]) != pytest.approx(float(per_rank[1][it]), rel=1e-6)  # ranks differ


# -- issue 12: a signal to the whole process group, with DataLoader workers -------------------------------
@pytest.mark.slow
def test_sigusr1_to_the_group_saves_and_asks_for_a_requeue(lists, synthetic_dataset, tmp_path):
    """Workers ignore the signal (no "worker killed" crash); the trainer saves at the next step boundary
    and exits with the documented requeue status (SIGTERM takes the same path and exits 0)."""
    import signal
    import time

    from cgd_video.engine.hooks import REQUEUE_EXIT_CODE

    out = tmp_path / "usr1"
    opts = tiny_opts(lists, synthetic_dataset, out, **{"DATALOADER.NUM_WORKERS": 1, "MODEL.ATTENTION": "none"})
    proc = subprocess.Popen([PYTHON, str(REPO / "tests" / "_train_with_hooks.py"), "--sleep", "0.5", "--cfg",
                             "synthetic_cgd", *opts], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    ckpt = out / "checkpoints" / "last.pt"
    try:
        deadline = time.time() + 120
        while not ckpt.is_file():  # the first step's checkpoint (TRAIN.CHECKPOINT_ITERS 1)
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGUSR1)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == REQUEUE_EXIT_CODE == 75, err[-3000:]
    assert "killed by signal" not in err
    assert 1 <= load_checkpoint(ckpt)["iteration"] < 8

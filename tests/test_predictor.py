"""Predictor: checkpoint loading, predict on paths and tensors, and the 10x3 protocol equal to the evaluator's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cgd_video.boundary.model import arch_keys, build_model
from cgd_video.config import load_config
from cgd_video.data.transforms import normalize_views
from cgd_video.engine.checkpoint import save_checkpoint

CLASSES = ["Alpha", "Bravo", "Charlie", "Delta"]
# Tiny C2D-R18 + CGD: 4 frames (pytorchvideo8 layout keeps them), 32 px crops, decoding in-process.
TINY_OPTS = [
    "MODEL.DEPTH", "18", "MODEL.NUM_CLASSES", "4", "MODEL.LAYOUT", "pytorchvideo8", "MODEL.ATTENTION", "cgd",
    "MODEL.DROPOUT", "0.0", "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TEST_SCALE", "36",
    "DATA.TEST_CROP", "32", "TEST.BATCH_SIZE", "2", "DATALOADER.NUM_WORKERS", "0", "TRAIN.DEVICE", "cpu",
]


def make_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised C2D-R18+CGD saved in the training checkpoint format.

    BN statistics and the classifier are randomised so that scores differ clearly between videos
    (default BN stats would make the eval network nearly input-independent)."""
    torch.manual_seed(seed)
    cfg = load_config(None, TINY_OPTS)
    model = build_model(cfg, load_pretrained=False).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        model.fc.weight.mul_(20.0)
    meta = {"cfg": cfg.dump(), "classes": CLASSES, "arch": arch_keys(cfg)}
    return save_checkpoint(path, model, None, None, 1, 1, meta)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


def _videos(root: Path) -> list:
    return sorted((root / "videos").rglob("*.mp4"))


def test_from_checkpoint_names_and_tensor_input(tiny_ckpt):
    from cgd_video import Predictor

    p = Predictor.from_checkpoint(tiny_ckpt, device="cpu", topk=10)
    assert p.classes == CLASSES and p.topk == 4  # capped at the number of classes
    assert not p.model.training
    clip = torch.randn(3, 4, 32, 32)
    one = p.predict(clip)
    assert set(one["labels"]) == set(CLASSES)
    assert one["top1_label"] == one["labels"][0] and one["scores"] == sorted(one["scores"], reverse=True)
    assert sum(one["scores"]) == pytest.approx(1.0, abs=1e-5)
    # Views of one video are softmax-averaged.
    views = torch.randn(3, 3, 4, 32, 32)
    probs = p.model(views).softmax(1).mean(0)
    got = p.predict(views)
    assert got["scores"] == pytest.approx(probs.sort(descending=True).values.tolist(), abs=1e-6)
    assert got["labels"] == [CLASSES[i] for i in probs.argsort(descending=True).tolist()]
    with pytest.raises(ValueError, match=r"\(3, T, S, S\)"):
        p.predict(torch.randn(4, 32, 32))


def test_predict_path_and_bad_file(tiny_ckpt, synthetic_dataset, bad_videos):
    from cgd_video import Predictor
    from cgd_video.data.decoding import VideoDecodeError

    p = Predictor.from_checkpoint(tiny_ckpt, device="cpu", views="1x1", topk=2)
    video = _videos(synthetic_dataset)[0]
    out = p.predict(video)
    assert len(out["labels"]) == 2 and out["labels"][0] in CLASSES
    item = p.dataset([video])[0]
    assert item["views"].dtype == torch.uint8  # normalised by the consumer, right before the model
    clips = normalize_views(item["views"], p.view_kwargs["mean"], p.view_kwargs["std"])
    assert out["scores"][0] == pytest.approx(p.model(clips).softmax(1).max().item(), abs=1e-6)
    with pytest.raises(VideoDecodeError, match="empty.mp4"):
        p.predict(bad_videos["empty"])


def test_views_parse_and_errors(tiny_ckpt):
    from cgd_video.inference.predictor import parse_views

    assert parse_views("10x3") == (10, 3) and parse_views("1X1") == (1, 1) and parse_views("5x1") == (5, 1)
    for bad in ("10x2", "3", "0x1", "axb"):
        with pytest.raises(ValueError, match="1x1"):
            parse_views(bad)


def test_timeline_windows(tiny_ckpt, synthetic_dataset):
    from cgd_video import Predictor

    p = Predictor.from_checkpoint(tiny_ckpt, device="cpu", views="1x1", topk=3)
    video = _videos(synthetic_dataset)[0]  # 24 frames at 25 fps
    windows = p.timeline(video, 0.4)  # 10 frames: [0,10) [10,20) and a last window ending at frame 24
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 0.4), (0.4, 0.8), (0.56, 0.96)]
    assert all(len(w["labels"]) == 3 and w["top1_label"] in CLASSES for w in windows)
    whole = p.timeline(video, 10.0)  # longer than the video: one window = the ordinary 1x1 prediction
    assert len(whole) == 1 and whole[0]["end"] == pytest.approx(0.96)
    assert whole[0]["scores"] == pytest.approx(p.predict(video)["scores"], abs=1e-6)


def test_uint8_tensor_input_is_normalised_like_the_dataset(tiny_ckpt):
    """Raw uint8 views are normalised with DATA.MEAN/STD by the shared function, then scored by the
    evaluator's ``video_scores``: the same result as passing the normalised float views."""
    from cgd_video import Predictor
    from cgd_video.engine.evaluator import video_scores

    p = Predictor.from_checkpoint(tiny_ckpt, device="cpu", topk=4)
    raw = torch.randint(0, 256, (3, 3, 4, 32, 32), dtype=torch.uint8)
    floats = normalize_views(raw, p.view_kwargs["mean"], p.view_kwargs["std"])
    got, ref = p.predict(raw), p.predict(floats)
    assert got["labels"] == ref["labels"] and got["scores"] == pytest.approx(ref["scores"], abs=1e-6)
    expected = video_scores(p.model, raw.unsqueeze(0), p.view_kwargs["mean"], p.view_kwargs["std"])[0]
    assert got["scores"] == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-6)


@pytest.mark.cuda
def test_predictor_on_cuda_matches_the_cpu(tiny_ckpt, synthetic_dataset):
    """The same videos through the evaluation path on the GPU: float32 (TF32 off) equals the CPU scores,
    bf16 autocast stays close and keeps the ranking of clearly separated classes."""
    from cgd_video import Predictor

    videos = _videos(synthetic_dataset)[:3]
    on_cpu = Predictor.from_checkpoint(tiny_ckpt, device="cpu", views="10x3", topk=4)
    cpu = [r["scores"] for r in on_cpu.predict_many(videos, num_workers=0)]
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for amp, tol in (("none", 1e-4), ("bf16", 3e-2)):
            p = Predictor.from_checkpoint(tiny_ckpt, device="cuda", views="10x3", topk=4, amp=amp, batch_size=2)
            assert p.device.type == "cuda" and p.amp == amp
            for got, want in zip((r["scores"] for r in p.predict_many(videos, num_workers=0)), cpu):
                assert got == pytest.approx(want, abs=tol)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

"""Device-side train augmentation: the worker and the device give the same clip; documented distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cgd_video.data import device_augment as A
from cgd_video.data.datasets import TrainClipDataset
from cgd_video.data.lists import VideoRecord
from cgd_video.data.synthetic import encode_mp4, render_video
from cgd_video.data.transforms import IMAGENET_MEAN, IMAGENET_STD

KW = dict(num_frames=4, sampling_rate=2, crop_size=24)


def _frames(t=3, h=40, w=60, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def mixed_records(tmp_path_factory, synthetic_dataset) -> list:
    """Synthetic 64x48 mp4s plus two of another size (80x60), so a batch needs padding."""
    extra = tmp_path_factory.mktemp("mixed")
    records = [VideoRecord(str(p), 0) for p in sorted((synthetic_dataset / "videos").rglob("*.mp4"))[:4]]
    for k in range(2):
        path = extra / f"big{k}.mp4"
        path.write_bytes(encode_mp4(render_video(k, 16, (80, 60), np.random.default_rng(k))))
        records.insert(1 + 2 * k, VideoRecord(str(path), 1))
    return records


def test_worker_and_device_give_the_same_clip_bit_for_bit(mixed_records):
    # decode_scale=False keeps the two source sizes apart, so the batch needs padding
    worker = TrainClipDataset(mixed_records, seed=3, decode_scale=False, **KW)
    device = TrainClipDataset(mixed_records, seed=3, device_augment=True, decode_scale=False, **KW)
    for epoch in (0, 5):
        worker.set_epoch(epoch)
        device.set_epoch(epoch)
        batch = device.collate_fn([device[i] for i in range(len(mixed_records))])
        clips, labels, index, replaced, params = batch
        assert clips.dtype == torch.uint8 and clips.shape[:2] == (6, 4) and clips.shape[2] > 48  # padded
        out = A.augment(clips, params, 24)
        assert out.shape == (6, 3, 4, 24, 24) and out.dtype == torch.float32
        for i in range(len(mixed_records)):
            clip, label, idx, rep = worker[i]
            assert torch.equal(out[i], clip), (epoch, i)
            assert (label, idx, rep) == (int(labels[i]), int(index[i]), int(replaced[i])) == (label, i, -1)
    worker.set_epoch(1)
    assert not torch.equal(worker[0][0], out[0])  # the epoch changes the draw


def test_sources_larger_than_needed_are_scaled_while_decoding(mixed_records, monkeypatch):
    """crop 24 (paper): the decoder scales the shorter side to ceil(24 / 0.75) = 32, both sources alike."""
    from cgd_video.data import datasets

    ds = TrainClipDataset(mixed_records, device_augment=True, **KW)
    assert ds.short_side == 32  # both sources (short sides 48 and 60) are at least 1.5 x 32
    decoded = []
    real = datasets.read_clip

    def spy(reader, indices_fn):
        frames = real(reader, indices_fn)
        decoded.append(tuple(frames.shape[1:3]))
        return frames

    monkeypatch.setattr(datasets, "read_clip", spy)
    for i in (0, 1):  # 64x48 and 80x60 sources
        box, *_, params = ds[i]
        top, left, h, w, _ = params.tolist()
        assert box.shape == (4, h, w, 3) and (top, left) == (0, 0) and 24 <= h == w <= 32
    assert decoded == [(32, 42), (32, 42)]  # 64 x 32 / 48 = 42.7 floors, as a torch resize would
    big = TrainClipDataset(mixed_records, device_augment=True, num_frames=4, sampling_rate=2, crop_size=40)
    assert big.short_side == 54 and big._scale_to(Path(mixed_records[0].path)) is None  # 48 < 1.5 x 54


def test_carry_cuts_the_box_and_collate_pads():
    frames = _frames(2, 40, 60)
    box, params = A.carry(frames, torch.tensor([5, 9, 20, 30, 1]))
    assert params.tolist() == [0, 0, 20, 30, 1] and torch.equal(box, frames[:, 5:25, 9:39]) and box.is_contiguous()
    other, other_params = A.carry(frames, torch.tensor([0, 0, 24, 24, 0]))
    samples = [(box, 1, 0, -1, params), (other, 2, 1, 5, other_params)]
    clips, labels, index, replaced, params_b = A.collate_train(samples)
    assert clips.shape == (2, 2, 24, 30, 3) and labels.tolist() == [1, 2] and replaced.tolist() == [-1, 5]
    assert torch.equal(clips[0, :, :20], box) and clips[0, :, 20:].eq(0).all() and clips[1, :, :, 24:].eq(0).all()
    assert torch.equal(params_b, torch.stack([params, other_params]))


def test_persistent_workers_see_the_epoch(mixed_records):
    """The epoch is shared memory: persistent DataLoader workers draw epoch e's clips after set_epoch(e)."""
    ds = TrainClipDataset(mixed_records, seed=1, device_augment=True, **KW)
    ref = TrainClipDataset(mixed_records, seed=1, device_augment=True, **KW)
    loader = DataLoader(ds, batch_size=3, num_workers=1, persistent_workers=True, collate_fn=ds.collate_fn)
    for epoch in (0, 2):
        ds.set_epoch(epoch)
        ref.set_epoch(epoch)
        got = torch.cat([b[4] for b in loader])
        assert torch.equal(got, torch.stack([ref[i][4] for i in range(len(ds))])), epoch


def test_augment_matches_a_reference_resize_and_float64_normalisation():
    """Crop, torchvision's antialiased resize, flip, then ``(x / 255 - mean) / std`` in float64: within one
    uint8 step of the resize's rounding (the reference resizes a contiguous copy, another kernel)."""
    import torchvision.transforms.v2.functional as TF

    frames = _frames()
    params = torch.tensor([[3, 10, 33, 33, 1], [0, 0, 40, 60, 0]])
    out = A.augment(torch.stack([frames, frames]), params, 24)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1, 1)
    for b, (top, left, h, w, flip) in enumerate(params.tolist()):
        x = frames[:, top : top + h, left : left + w].permute(0, 3, 1, 2).contiguous()
        x = TF.resize(x, [24, 24], antialias=True)
        x = (x.flip(-1) if flip else x).permute(1, 0, 2, 3).double()
        torch.testing.assert_close(out[b].double(), (x / 255 - mean) / std, atol=1.01 / 255 / 0.224, rtol=0)
        assert ((out[b].double() - (x / 255 - mean) / std).abs() < 1e-5).float().mean() > 0.9  # mostly exact
    # a box of the output size is a pure slice: exactly the normalised pixels
    exact = A.augment(frames[None], torch.tensor([[5, 7, 24, 24, 0]]), 24)[0]
    raw = frames[:, 5:29, 7:31].permute(3, 0, 1, 2).double()
    torch.testing.assert_close(exact.double(), (raw / 255 - mean) / std, atol=1e-5, rtol=0)


def test_paper_boxes_and_flips_follow_the_documented_distribution():
    n, h, w = 4000, 240, 320
    draws = torch.stack([A.draw_params(np.random.default_rng([9, i]), h, w, 224, "paper") for i in range(n)])
    top, left, bh, bw, flip = draws.T.numpy()
    assert (bh == bw).all() and bh.min() >= 180 and bh.max() <= 240  # a square of 0.75-1 x the shorter side
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    assert abs(bh.mean() - 210) < 1.5 and bh.min() <= 181 and bh.max() >= 239  # uniform over [180, 240]
    counts = np.histogram(bh, bins=6, range=(180, 240))[0]
    assert counts.min() > 0.8 * n / 6  # no part of the range is starved
    # positions uniform over the free room: the left edge's mean offset is half the room
    assert abs(np.mean(left / np.maximum(w - bw, 1)) - 0.5) < 0.03
    assert abs(flip.mean() - 0.5) < 0.03 and set(flip.tolist()) == {0, 1}


def test_jitter_boxes_follow_the_documented_distribution():
    n, h, w = 3000, 240, 320
    draws = torch.stack([A.draw_params(np.random.default_rng([4, i]), h, w, 224, "jitter", (256, 320))
                         for i in range(n)])
    top, left, bh, bw, flip = draws.T.numpy()
    # a 224 square of the frame scaled to shorter side s in [256, 320]: 224 * 240 / s pixels of the source
    assert bh.min() >= round(224 * 240 / 320) and bh.max() <= round(224 * 240 / 256)
    assert (np.abs(bh - bw) <= 1).all()
    implied = 224 * 240 / bh
    assert abs(implied.mean() - 288) < 3
    assert (top + bh <= h).all() and (left + bw <= w).all() and (top >= 0).all() and (left >= 0).all()
    assert abs(flip.mean() - 0.5) < 0.035


def test_draws_are_a_function_of_the_generator_and_aug_is_checked():
    a = A.draw_params(np.random.default_rng([1, 2, 3]), 48, 64, 24)
    assert torch.equal(a, A.draw_params(np.random.default_rng([1, 2, 3]), 48, 64, 24))
    with pytest.raises(ValueError, match="paper, jitter"):
        A.draw_params(np.random.default_rng(0), 48, 64, 24, aug="mixup")
    with pytest.raises(ValueError, match="uint8 clips"):
        A.augment(_frames().float()[None], a[None], 24)
    assert A.decode_short_side(224) == 299 and A.decode_short_side(224, "jitter", (256, 320)) == 320


def test_flip_mirrors_the_clip():
    frames = _frames()
    plain = A.augment(frames[None], torch.tensor([[2, 3, 30, 30, 0]]), 24)
    flipped = A.augment(frames[None], torch.tensor([[2, 3, 30, 30, 1]]), 24)
    assert torch.equal(plain.flip(-1), flipped) and not torch.equal(plain, flipped)


@pytest.mark.cuda
def test_augment_on_cuda_matches_the_cpu_and_prepare_batch_uses_it(mixed_records):
    """On the GPU the same boxes and parameters give the CPU's clip within one uint8 step of the resize
    (torchvision resizes uint8 on CUDA through float); prepare_batch augments on the device."""
    from cgd_video.boundary.training import prepare_batch

    ds = TrainClipDataset(mixed_records, seed=2, device_augment=True, **KW)
    batch = ds.collate_fn([ds[i] for i in range(len(ds))])
    cpu = A.augment(batch[0], batch[4], 24)
    gpu = A.augment(batch[0].cuda(), batch[4], 24)
    assert gpu.is_cuda and gpu.shape == cpu.shape
    assert (gpu.cpu() - cpu).abs().max().item() <= 1.01 / 255 / 0.224
    inputs, labels = prepare_batch(batch, torch.device("cuda"), augment=lambda c, p: A.augment(c, p, 24))
    assert inputs.is_cuda and inputs.dtype == torch.float32 and torch.equal(inputs, gpu) and labels.is_cuda

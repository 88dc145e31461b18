"""cgd_video.data.transforms: normalisation vs float64, resize vs torchvision, crops, scale-up, test views.

The train augmentation is tested in test_device_augment.py.
"""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cgd_video.data import transforms as T


def _frames(t=3, h=24, w=36, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def test_normalize_matches_float64_reference_and_layout():
    frames = _frames()
    out = T.normalize(frames.permute(0, 3, 1, 2), T.IMAGENET_MEAN, T.IMAGENET_STD)
    ref = (frames.double().numpy() / 255.0 - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD)
    ref = torch.from_numpy(ref).permute(3, 0, 1, 2)  # (3, T, H, W)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 24, 36) and out.is_contiguous()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hw,short", [((24, 36), 16), ((36, 24), 50), ((240, 320), 256), ((25, 37), 24)])
def test_resize_short_side_matches_torchvision(hw, short):
    x = _frames(2, *hw).permute(0, 3, 1, 2)
    got = T.resize_short_side(x, short)
    ref = TF.resize(x.contiguous(), [short], antialias=True)  # torchvision computes the long side itself
    assert got.shape == ref.shape and min(got.shape[-2:]) == short
    assert (got.int() - ref.int()).abs().max() <= 1  # channels-last vs contiguous uint8 kernels may round apart




@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("shape,size", [((4, 3, 24, 36), (16, 24)), ((2, 3, 37, 25), (50, 34)),
                                        ((1, 3, 48, 64), (32, 32)), ((3, 3, 30, 30), (30, 30))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_resize_uint8_is_torchvisions_resize_bit_for_bit(shape, size, channels_last, native, monkeypatch):
    """Our resize (no torchvision import at run time) against torchvision's v2 resize, both down and up,
    both memory layouts, on ATen's native uint8 kernel and on the float32 path (CUDA, CPUs without AVX2)."""
    from torchvision.transforms.v2.functional import _geometry

    monkeypatch.setattr(T, "_native_uint8_bilinear", lambda device: native)
    monkeypatch.setattr(_geometry, "_do_native_uint8_resize_on_cpu", lambda interpolation: native)
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = T.resize_uint8(x, size)
    ref = TF.resize(x, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    assert got.dtype == torch.uint8 and torch.equal(got, ref)


def test_cgd_video_never_imports_torchvision():
    """torchvision's import pulls in torch._dynamo (~3.5 s per process on 2 cores): no module of the package,
    so no tool, torchrun worker or spawned DataLoader worker, may import either (tests and benchmarks do)."""
    import subprocess
    import sys

    probe = ("import importlib, pkgutil, sys, warnings, cgd_video; warnings.simplefilter('ignore'); "
             "[importlib.import_module(m.name) for m in pkgutil.walk_packages(cgd_video.__path__, 'cgd_video.')]; "
             "print(sorted(m for m in sys.modules if m.startswith(('torchvision', 'torch._dynamo'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout[-2000:], out.stderr[-2000:])


@pytest.mark.parametrize("hw,short", [((288, 352), 256), ((720, 1280), 256), ((1080, 1920), 299), ((352, 288), 224)])
def test_decoders_scale_to_the_size_a_torch_resize_gives(hw, short):
    """Decode-time scaling (containers.scaled_size, used by the PyAV and decord readers and the
    preprocessor) and the torch resize share one rule, torchvision's: for 352x288 at 256 the long side
    is 312 (floor), where the decoders used to round to 313."""
    from cgd_video.data.containers import scaled_size

    ref = TF.resize(torch.zeros(1, 3, *hw, dtype=torch.uint8), [short], antialias=True).shape[-2:]
    assert scaled_size(*hw, short) == T.short_side_size(*hw, short) == tuple(ref)
    assert scaled_size(*hw, min(hw)) is None  # not below the source's shorter side: left alone


def test_test_views_are_exact_crops_when_no_resize_is_needed():
    frames = _frames(2, 32, 48)
    views = T.test_views(frames, test_scale=32, test_crop=32, num_crops=3)
    assert views.shape == (3, 3, 2, 32, 32)
    x = frames.permute(0, 3, 1, 2)
    for view, left in zip(views, (0, 8, 16)):  # left, centre, right along the longer (width) side
        assert torch.equal(view, T.normalize(x[..., :, left : left + 32], T.IMAGENET_MEAN, T.IMAGENET_STD))
    portrait = T.test_views(frames.transpose(1, 2), 32, 32, 3)  # 48x32: top, centre, bottom
    assert torch.equal(portrait[2], T.normalize(x.transpose(-1, -2)[..., 16:48, :], T.IMAGENET_MEAN, T.IMAGENET_STD))


def test_frames_smaller_than_the_crop_are_scaled_up():
    frames = _frames(2, 20, 30)
    views = T.test_views(frames, test_scale=16, test_crop=40, num_crops=1)
    assert views.shape == (1, 3, 2, 40, 40)
    up = TF.resize(frames.permute(0, 3, 1, 2).contiguous(), [40, 60], antialias=True)
    expected = T.normalize(up[..., :, 10:50], T.IMAGENET_MEAN, T.IMAGENET_STD)
    assert (views[0] - expected).abs().max() < 2 / 255 / 0.224  # within one uint8 step


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"uint8 frames \(T, H, W, 3\)"):
        T.test_views(_frames().float(), 16, 16, 1)


def test_normalize_views_equals_the_float_path_and_float64():
    views = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 3, 3, 4, 8, 8), dtype=np.uint8))
    mean, std = (0.45, 0.45, 0.45), (0.225, 0.2, 0.25)
    got = T.normalize_views(views, mean, std)
    assert got.dtype == torch.float32 and got.shape == (6, 3, 4, 8, 8) and got.is_contiguous()
    # The per-clip training/legacy path on each view, (T, 3, H, W) -> (3, T, H, W): same arithmetic.
    old = torch.stack([T.normalize(v.permute(1, 0, 2, 3), mean, std) for v in views.flatten(0, 1)])
    torch.testing.assert_close(got, old, atol=1e-6, rtol=0)
    ref = (views.double() / 255.0 - torch.tensor(mean).double().view(3, 1, 1, 1)) / torch.tensor(std).double().view(3, 1, 1, 1)
    torch.testing.assert_close(got.double(), ref.flatten(0, 1), atol=1e-5, rtol=0)
    cl = T.normalize_views(views, mean, std, device="cpu", channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last_3d) and torch.equal(cl, got)
    assert views.dtype == torch.uint8  # input untouched


def test_normalize_views_rejects_float_or_wrong_layout():
    with pytest.raises(ValueError, match=r"uint8 views \(\.\.\., 3, T, S, S\)"):
        T.normalize_views(torch.zeros(2, 3, 4, 8, 8))
    with pytest.raises(ValueError, match="uint8 views"):
        T.normalize_views(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8))  # channels at the end
    with pytest.raises(ValueError, match="3 values"):
        T.normalize_views(torch.zeros(1, 3, 1, 2, 2, dtype=torch.uint8), (0.5, 0.5), (0.5, 0.5))


def test_test_crops_are_uint8_slices_and_test_views_their_normalisation():
    frames = _frames(2, 32, 48)  # no resize: crops are exact slices
    crops = T.test_crops(frames, 32, 32, 3)
    x = frames.permute(3, 0, 1, 2)  # (3, T, H, W)
    assert crops.dtype == torch.uint8 and crops.shape == (3, 3, 2, 32, 32)
    for crop, left in zip(crops, (0, 8, 16)):
        assert torch.equal(crop, x[..., left : left + 32])
    assert torch.equal(T.test_views(frames, 32, 32, 3), T.normalize_views(crops))

"""Shared fixtures: a tiny synthetic video dataset, broken video files, the reference data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from cgd_video.data.synthetic import encode_mp4, render_video, write_synthetic_dataset

def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests skip where torch sees no CUDA GPU (benchmarks/gpu_check.sh runs them)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test starts from torch's seed 0, so its random weights and inputs (and so its float32 margins
    against a tolerance) are the same on every run and on every xdist worker, whatever ran before it."""
    import torch

    torch.manual_seed(0)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Tiny on purpose: 4 classes x 3 videos (2 train + 1 test each), 24 frames of 64x48, under a second.
SYNTHETIC_KW = dict(classes=4, videos_per_class=3, frames=24, size=(64, 48), fps=25, seed=0)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """Root of a tiny synthetic dataset: ``videos/<Class>/*.mp4`` and ``splits/`` (UCF-101 format, CRLF).

    Generated once per test session (per xdist worker) with ``SYNTHETIC_KW``.
    """
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), **SYNTHETIC_KW)


@pytest.fixture
def synthetic_kw() -> dict:
    """The keyword arguments ``synthetic_dataset`` was written with (a copy)."""
    return dict(SYNTHETIC_KW)


@pytest.fixture
def bad_videos(tmp_path) -> Dict[str, Path]:
    """Broken files in ``tmp_path/bad``: ``empty`` (0-byte .mp4), ``truncated`` (a good h264 mp4 cut
    in half, so its index atom is gone), ``text`` (a text file named .avi)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    good = encode_mp4(render_video(0, 16, (64, 48), np.random.default_rng(0)))
    paths = {"empty": bad / "empty.mp4", "truncated": bad / "truncated.mp4", "text": bad / "notes.avi"}
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(good[: len(good) // 2])
    paths["text"].write_text("this is not a video\n")
    return paths


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (official UCF-101 split files, Mini-Kinetics-200 id lists), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent")
    return SHARED_DATA

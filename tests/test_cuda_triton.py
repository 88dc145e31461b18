"""CGD's Triton kernels compiled for the GPU: the checks of tests/test_cgd_triton.py (float64 references,
fresh random inputs, every layout, ties at the max), run on CUDA. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from test_cgd_triton import LAYOUTS, check_backward_kernels, check_module_backward, check_pool_stats  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_stats_cuda(layout, dtype):
    for seed in range(3):
        check_pool_stats("cuda", layout, dtype, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_kernels_cuda(layout, dtype):
    for seed in range(3):
        check_backward_kernels("cuda", layout, dtype, seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant,temporal", [("v10", "shared"), ("v10", "concat"), ("v1", "frame")])
def test_module_on_triton_path_matches_autograd_cuda(layout, variant, temporal):
    check_module_backward("cuda", layout, variant, temporal)

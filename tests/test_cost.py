"""Cost counting (cgd_video/utils/cost.py, cost_table.py behind tools/cost.py) against the paper's Table 3 / Table 11 figures.

Oracles: the paper's printed deltas (PROTOCOL §4: NL +2.10M / +1.80G, CGNL g8 +1.64M / +1.29G,
g1 +2.10M / +1.64G at res4's input 1x1024x4x14x14), CGD's exact parameter counts (6*sum(C) = 22,656,
6*sum(C*T) = 95,232) and independent closed forms for the element counts of one CGD module.
The whole-model count at 32x224x224 takes ~5 s per model here, so the NL/CGNL deltas are counted on the
block alone at its res4 input (the delta of the whole model is exactly that, see the slow test).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cgd_video.models import CGD, CGNLBlock, NonLocalBlock, create_model
from cgd_video.utils.cost import cgd_cost, count_macs, count_params
from cgd_video.utils.cost_table import TABLE3, Row, EvalProtocol, measure, normalise, render

RES4 = (1, 1024, 4, 14, 14)  # res4 input of C2D-R50 (nonlocal32 layout) at 1x3x32x224x224


@pytest.mark.parametrize(
    "block, params, gmacs",
    [
        (lambda: NonLocalBlock(1024), 2.10e6, 1.80),
        (lambda: CGNLBlock(1024, groups=8), 1.64e6, 1.29),
        (lambda: CGNLBlock(1024, groups=1), 2.10e6, 1.64),
    ],
    ids=["nl", "cgnl_g8", "cgnl_g1"],
)
def test_block_cost_matches_paper_table3(block, params, gmacs):
    torch.manual_seed(0)
    m = block().eval()
    assert round(count_params(m) / 1e6, 2) == pytest.approx(params / 1e6)
    macs = count_macs(m, torch.randn(RES4))
    assert abs(macs.total / 1e9 - gmacs) <= 0.005 + 1e-9, macs  # equal after rounding to 0.01G
    assert "aten::batch_norm" in macs.skipped or "aten::group_norm" in macs.skipped  # normalisation excluded


def test_nl_table11_image_delta():
    """Table 11: one NL block in res4 of ResNet-50 on an 800x800 image (50x50 positions): +6.84G."""
    m = NonLocalBlock(1024).eval()
    assert round(count_macs(m, torch.randn(1, 1024, 1, 50, 50)).total / 1e9, 2) == 6.84


def test_counter_counts_products_not_elementwise_work():
    """conv/linear/bmm/mul are MACs (one per multiply-add); BN, ReLU, pooling, softmax, add are not."""

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))  # 4*3*9 per output position, 6x6 positions
            a = torch.softmax(torch.bmm(y.flatten(2), y.flatten(2).transpose(1, 2)), -1)  # 4x36x4
            z = (a * 2.0).sum(-1) * y.mean((2, 3))  # scalar mul: 0; tensor mul: 4
            return self.fc(torch.nn.functional.max_pool2d(y, 2).mean((2, 3)) + z)  # 4*5

    macs = count_macs(Toy().eval(), torch.randn(1, 3, 8, 8))
    assert macs.total == 4 * 3 * 9 * 36 + 4 * 36 * 4 + 4 + 4 * 5
    for op in ("aten::batch_norm", "aten::softmax", "aten::max_pool2d"):
        assert op in macs.skipped


def test_cgd_vector_macs_are_o_of_c_and_passes_are_counted():
    """One CGD v10 module: vector MACs do not grow with H*W; pooling/rescale counts are the X passes."""
    n, c, t = 1, 64, 4
    small = cgd_cost(_Wrap(CGD(c, temporal="shared")), torch.randn(n, c, t, 7, 7))
    big = cgd_cost(_Wrap(CGD(c, temporal="shared")), torch.randn(n, c, t, 28, 28))
    # shared v10: two first-level stages per frame (f.w and g*s: 2*C*T each) + final stage (2*C)
    assert small.vector_macs == big.vector_macs == 2 * 2 * c * t + 2 * c
    assert big.rescale_elements == n * c * t * 28 * 28  # X * (1 + y): one product per element
    assert big.pool_elements == 2 * n * c * t * 28 * 28  # average and max pooling read X once each
    concat = cgd_cost(_Wrap(CGD(c, temporal="concat", num_frames=t)), torch.randn(n, c, t, 7, 7))
    assert concat.vector_macs == 6 * c * t  # three stages of 2*D, D = C*T
    mean = cgd_cost(_Wrap(CGD(c, temporal="mean")), torch.randn(n, c, t, 7, 7))
    assert mean.vector_macs == 6 * c


class _Wrap(nn.Module):
    def __init__(self, cgd):
        super().__init__()
        self.attn = cgd

    def forward(self, x):
        return self.attn(x)


@pytest.mark.parametrize("temporal, extra", [("shared", 22_656), ("mean", 22_656), ("frame", 22_656),
                                             ("concat", 95_232)])
def test_cgd_delta_params_exact(temporal, extra):
    base = count_params(create_model("c2d_r50", num_classes=400))
    cgd = create_model("c2d_r50_cgd", num_classes=400, attention_kwargs={"temporal": temporal})
    assert count_params(cgd) - base == extra


@pytest.mark.parametrize("name, extra", [("c2d_r50_nl", 2_101_760), ("c2d_r50_cgnl", 1_640_448),
                                         ("c2d_r50_cgnl_g1", 2_099_200)])
def test_nonlocal_delta_params_exact(name, extra):
    """Whole-model deltas equal the blocks' own parameter counts (2.10M / 1.64M / 2.10M)."""
    assert count_params(create_model(name)) - count_params(create_model("c2d_r50")) == extra


def test_per_video_is_per_view_at_the_test_crop_times_views():
    """Per video = the counter on one view at the protocol's crop x its views, not per-view(train) x views."""
    rows = [Row("base", "c2d_r18"), Row("cgd", "c2d_r18_cgd", is_cgd=True)]
    kw = {"num_classes": 5, "num_frames": 8}
    protocols = [EvalProtocol("ucf", 1, 1, 48), EvalProtocol("mk", 10, 3, 48)]
    res = measure(rows, kw, (1, 3, 8, 32, 32), "test", protocols)
    torch.manual_seed(0)
    at_48 = count_macs(create_model("c2d_r18", **kw).eval(), torch.randn(1, 3, 8, 48, 48)).total
    at_32 = count_macs(create_model("c2d_r18", **kw).eval(), torch.randn(1, 3, 8, 32, 32)).total
    base = res[0]
    assert base["macs"] == at_32
    assert base["per_video"]["ucf"]["macs_per_video"] == at_48
    assert base["per_video"]["mk"]["macs_per_view"] == at_48
    assert base["per_video"]["mk"]["macs_per_video"] == 30 * at_48 != 30 * at_32
    cgd_model = create_model("c2d_r18_cgd", **kw).eval()
    vector_48 = cgd_cost(cgd_model, torch.randn(1, 3, 8, 48, 48)).vector_macs
    assert res[1]["per_video"]["mk"]["macs_per_video"] == 30 * (at_48 + vector_48)
    normalise(res, "cgd")
    text = render(res, "t", protocols)
    assert "MACs/video mk 10x3@48" in text and "MACs/view @32" in text


@pytest.mark.slow
def test_table3_rows_small_input():
    """The Table 3 rows on a small clip: documented keys and exact deltas."""
    res = measure(TABLE3, {"num_classes": 400, "num_frames": 8}, (1, 3, 8, 32, 32), "table 3",
                  [EvalProtocol("mk", 10, 3, 32)])
    normalise(res, "shared")
    rows = json.loads(json.dumps(res))  # JSON-serialisable as tools/cost.py writes it
    assert [r["name"] for r in rows][:4] == ["C2D-R50 (baseline)", "+NL (1 block, res4)",
                                             "+CGNL g=8 (1 block, res4)", "+CGNL g=1 (1 block, res4)"]
    for r in rows:
        assert {"name", "params", "delta_params", "macs", "delta_macs", "per_video"} <= set(r)
        assert all(isinstance(r[k], int) for k in ("params", "delta_params", "macs", "delta_macs"))
        assert r["per_video"]["mk"]["macs_per_video"] == 30 * r["macs"]  # test crop = training crop here
    by_name = {r["name"]: r for r in rows}
    assert by_name["+CGD v10 shared"]["delta_params"] == 22_656
    # concat: 6 * sum over blocks of C*T; at 8 input frames T = 2 in res2 and 1 after (nonlocal32 layout)
    assert by_name["+CGD v10 concat"]["delta_params"] == 6 * (3 * 64 * 2 + 4 * 128 + 6 * 256 + 3 * 512)
    assert by_name["+NL (1 block, res4)"]["delta_params"] == 2_101_760
    # the whole-model NL delta at this input equals the block alone at its res4 input (T=1 at 8 frames)
    nl_block = count_macs(NonLocalBlock(1024).eval(), torch.randn(1, 1024, 1, 2, 2)).total
    assert by_name["+NL (1 block, res4)"]["delta_macs"] == nl_block
    assert 0 < by_name["+CGD v10 shared"]["delta_macs"] < 1e5  # O(C) vector work

"""NonLocalBlock and CGNLBlock: float64 references written with 3-D ops, identity at start, Table 3 costs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cgd_video.models import CGNLBlock, NonLocalBlock


def _randomise(block: torch.nn.Module, seed: int = 0) -> None:
    """Non-zero final norm (so the block is not the identity) and random running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
        for name in ("running_mean", "running_var"):
            buf = getattr(getattr(block, "bn", None), name, None)
            if buf is not None:
                buf.copy_(torch.rand(buf.shape, generator=gen, dtype=buf.dtype) + (0.5 if "var" in name else -0.5))


def _conv3d_1x1(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    return F.conv3d(x, conv.weight.unsqueeze(2), conv.bias, groups=conv.groups)


def _nonlocal_reference(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """Embedded Gaussian on (N, C, T, H, W) with Conv3d / MaxPool3d, positions in (t, h, w) order."""
    theta = _conv3d_1x1(x, block.theta).flatten(2)  # (N, C', THW)
    phi = F.max_pool3d(_conv3d_1x1(x, block.phi), (1, 2, 2)).flatten(2)
    g = F.max_pool3d(_conv3d_1x1(x, block.g), (1, 2, 2)).flatten(2)
    attn = torch.softmax(torch.einsum("ncq,nck->nqk", theta, phi), dim=-1)
    y = torch.einsum("nqk,nck->ncq", attn, g).reshape(x.shape[0], -1, *x.shape[2:])
    bn = block.bn
    z = F.batch_norm(_conv3d_1x1(y, block.out), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, bn.eps)
    return x + z


def _cgnl_reference(block: CGNLBlock, x: torch.Tensor) -> torch.Tensor:
    """The CGNL release's grouped dot-product kernel, one group at a time."""
    theta, phi, g = (_conv3d_1x1(x, c) for c in (block.theta, block.phi, block.g))
    ys = []
    for t_k, p_k, g_k in zip(*(v.chunk(block.groups, dim=1) for v in (theta, phi, g))):
        att = (p_k * g_k).sum(dim=(1, 2, 3, 4), keepdim=True)
        if block.use_scale:
            att = att / p_k[0].numel() ** 0.5
        ys.append(t_k * att)
    z = _conv3d_1x1(torch.cat(ys, dim=1), block.out)
    return x + F.group_norm(z, block.groups, block.gn.weight, block.gn.bias, block.gn.eps)


@pytest.mark.parametrize("channels_last", [False, True])
def test_nonlocal_matches_float64_reference(channels_last):
    block = NonLocalBlock(16).double().eval()
    _randomise(block)
    x = torch.randn(2, 16, 3, 6, 4, dtype=torch.float64)
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
    torch.testing.assert_close(block(x), _nonlocal_reference(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("groups, use_scale", [(1, False), (4, False), (4, True)])
def test_cgnl_matches_float64_reference(groups, use_scale):
    block = CGNLBlock(16, groups=groups, use_scale=use_scale).double()
    _randomise(block, seed=groups)
    x = torch.randn(2, 16, 3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(block(x), _cgnl_reference(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make", [lambda: NonLocalBlock(32), lambda: CGNLBlock(32, groups=8), lambda: CGNLBlock(32, 1)])
@pytest.mark.parametrize("train", [True, False])
def test_blocks_start_as_identity(make, train):
    block = make().train(train)
    x = torch.randn(2, 32, 2, 6, 6)
    assert torch.equal(block(x), x)
    block.eval()
    _randomise(block)
    assert not torch.allclose(block(x), x)


# Table 3 / PROTOCOL §4 at C = 1024, T = 4, 14×14: (block, params, GMACs)
TABLE3 = {
    "nl": (lambda: NonLocalBlock(1024), 2_101_760, 1.80),
    "cgnl_g8": (lambda: CGNLBlock(1024, groups=8), 1_640_448, 1.29),
    "cgnl_g1": (lambda: CGNLBlock(1024, groups=1), 2_099_200, 1.64),
}


@pytest.mark.parametrize("name", sorted(TABLE3))
def test_param_counts_match_table3(name):
    make, params, _ = TABLE3[name]
    n = sum(p.numel() for p in make().parameters())
    assert n == params and round(n / 1e6, 2) == {"nl": 2.10, "cgnl_g8": 1.64, "cgnl_g1": 2.10}[name]


@pytest.mark.parametrize("name", sorted(TABLE3))
def test_macs_match_table3(name):
    """fvcore counts one MAC per multiply-add of convs and matrix products (norms add < 0.01G)."""
    fvcore = pytest.importorskip("fvcore.nn")
    make, _, gmacs = TABLE3[name]
    block = make().eval()
    flops = fvcore.FlopCountAnalysis(block, torch.randn(1, 1024, 4, 14, 14))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    macs = sum(v for k, v in by_op.items() if k in ("conv", "matmul", "bmm", "einsum", "linear"))
    assert round(macs / 1e9, 2) == gmacs, by_op


def test_cgnl_groups_must_divide():
    with pytest.raises(ValueError, match="groups=3"):
        CGNLBlock(16, groups=3)


def test_cgnl_init_matches_the_release_inside_the_network():
    """CGNL release: the block's convs N(0, 0.01) and GroupNorm gamma = beta = 0, not the network's Kaiming."""
    from cgd_video.models import create_model

    torch.manual_seed(0)
    block = create_model("c2d_r50_cgnl", num_frames=8).layer3[4].nl
    for conv in (block.theta, block.phi, block.g, block.out):
        w = conv.weight.detach()
        assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.count_nonzero(block.gn.weight) == 0 and torch.count_nonzero(block.gn.bias) == 0

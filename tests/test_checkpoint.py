"""Checkpoints: weights_only loadable, atomic, RNG round trip, incompatible model/config refused."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from cgd_video.boundary.model import arch_keys, check_model_compatible
from cgd_video.boundary.training import recipe_keys
from cgd_video.config import load_config
from cgd_video.engine.checkpoint import (
    CheckpointError,
    check_compatible,
    fingerprint,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)


def _meta(cfg, classes=()):
    return dict(cfg=cfg.dump(), classes=list(classes), arch=arch_keys(cfg), recipe=recipe_keys(cfg))


def check_resume_compatible(ck, cfg):
    check_compatible(ck["arch"], arch_keys(cfg), "checkpoint", "model")
    check_compatible(ck["recipe"], recipe_keys(cfg), "checkpoint", "recipe")


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return model, opt, scaler


def test_roundtrip_weights_only(tmp_path):
    cfg = load_config("ucf101_cgd", ["SEED", "5"])
    model, opt, scaler = _setup()
    path = save_checkpoint(tmp_path / "ck" / "last.pt", model, opt, scaler, 3, 42, _meta(cfg, ["a", "b", "c"]))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)  # data only, no pickled code
    assert raw["epoch"] == 3 and raw["iteration"] == 42 and raw["classes"] == ["a", "b", "c"]
    assert isinstance(raw["cfg"], str) and "SEED: 5" in raw["cfg"]
    assert all(isinstance(v, torch.Tensor) for v in raw["rng"].values())
    ck = load_checkpoint(path)
    m2, o2, _ = _setup()
    m2.load_state_dict(ck["model"])
    o2.load_state_dict(ck["optimizer"])
    for a, b in zip(model.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["momentum_buffer"], o2.state_dict()["state"][0]["momentum_buffer"])


def test_a_save_that_fails_half_way_leaves_the_previous_checkpoint(tmp_path):
    """The checkpoint is streamed into a temporary file: tensors written before the failure must not reach
    ``last.pt``, and no temporary may stay behind."""
    model, opt, scaler = _setup()
    path = save_checkpoint(tmp_path / "last.pt", model, opt, scaler, 1, 7)
    before = path.read_bytes()
    with pytest.raises(Exception):  # a lambda cannot be pickled; the weights before it are already written
        save_checkpoint(path, model, opt, scaler, 2, 8, {"z_unpicklable": lambda: None})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert path.read_bytes() == before and load_checkpoint(path)["iteration"] == 7


def test_rng_state_roundtrip():
    random.gauss(0, 1)
    s = get_rng_state()
    a = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist())
    set_rng_state(s)
    assert (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist()) == a


def test_different_model_refused_with_keys(tmp_path):
    cfg = load_config("ucf101_cgd")
    model, opt, scaler = _setup()
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, opt, scaler, 1, 1, _meta(cfg)))
    check_model_compatible(ck, cfg)
    other = load_config("ucf101_c2d")  # no CGD
    assert fingerprint(arch_keys(other)) != fingerprint(arch_keys(cfg)) == ck["model_fingerprint"]
    with pytest.raises(CheckpointError, match=r"MODEL\.ATTENTION: checkpoint 'cgd' vs now 'none'"):
        check_model_compatible(ck, other)
    with pytest.raises(CheckpointError, match="different model"):
        check_resume_compatible(ck, other)


def test_different_recipe_refused_but_free_keys_allowed(tmp_path):
    cfg = load_config("ucf101_cgd")
    model, opt, scaler = _setup()
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, opt, scaler, 1, 1, _meta(cfg)))
    check_resume_compatible(ck, load_config("ucf101_cgd", ["SOLVER.MAX_EPOCH", "120", "DATALOADER.NUM_WORKERS", "0",
                                                           "DATA.ROOT", "/elsewhere", "TRAIN.CHECKPOINT_ITERS", "7"]))
    with pytest.raises(CheckpointError, match=r"SOLVER\.BASE_LR"):
        check_resume_compatible(ck, load_config("ucf101_cgd", ["SOLVER.BASE_LR", "0.1"]))


def test_unsafe_or_missing_files_error_with_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "code.pt"
    torch.save({"model": {}, "obj": nn.Linear(2, 2)}, bad)  # a pickled module: not plain data
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(bad)


def test_keys_of_modules_the_model_lacks_neither_clash_nor_refuse_a_resume(tmp_path):
    """``MODEL.CGNL_GROUPS`` configures CGNL blocks only: the UCF-101 base sets it to 1, which used to clash
    with the NL preset (it builds none) and to refuse resuming a CGD run with another value. Options of the
    model's own modules still refuse."""
    from cgd_video.boundary.model import model_kwargs, unused_model_keys

    nl = load_config("ucf101_c2d", ["MODEL.NAME", "c2d_r50_nl"])  # was: "builds cgnl_groups=8 but ... is 1"
    assert model_kwargs(nl)["nonlocal_type"] == "nl" and "cgnl_groups" not in model_kwargs(nl)
    assert "MODEL.CGNL_GROUPS" not in arch_keys(nl) and "MODEL.CGNL_GROUPS" in arch_keys(load_config("ucf101_cgnl"))
    cfg = load_config("ucf101_cgd")
    assert {"MODEL.CGNL_GROUPS", "MODEL.NONLOCAL_PLACEMENT"} <= unused_model_keys(cfg)
    model, opt, scaler = _setup()
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, opt, scaler, 1, 1, _meta(cfg)))
    check_resume_compatible(ck, load_config("ucf101_cgd", ["MODEL.CGNL_GROUPS", "8", "MODEL.NONLOCAL_PLACEMENT", "nl5"]))
    with pytest.raises(CheckpointError, match=r"MODEL\.CGD_VARIANT: checkpoint 'v10' vs now 'v1'"):
        check_resume_compatible(ck, load_config("ucf101_cgd", ["MODEL.CGD_VARIANT", "v1"]))
    # a checkpoint written before: it stored those keys too; a key only the checkpoint has is not compared
    ck["recipe"] = {**ck["recipe"], "MODEL.CGNL_GROUPS": 1, "MODEL.NONLOCAL_PLACEMENT": "res4_last"}
    check_resume_compatible(ck, cfg)
    with pytest.raises(CheckpointError, match=r"MODEL\.ATTENTION: checkpoint 'cgd' vs now 'none'"):
        check_resume_compatible(ck, load_config("ucf101_c2d"))  # the module's own key still tells them apart

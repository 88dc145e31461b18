"""LR schedule: pure function of the fractional epoch; warmup, step, cosine, linear scaling."""

import math

import pytest

from cgd_video.config import load_config
from cgd_video.boundary.training import schedule_kwargs
from cgd_video.engine.lr_schedule import lr_at, scaled_base_lr


def test_step_schedule_of_the_paper():
    kw = dict(base_lr=0.01, policy="step", max_epoch=100, steps=(40, 80), gamma=0.1, warmup_epochs=0)
    assert lr_at(0, **kw) == pytest.approx(0.01)
    assert lr_at(39.999, **kw) == pytest.approx(0.01)
    assert lr_at(40, **kw) == pytest.approx(0.001)
    assert lr_at(79.5, **kw) == pytest.approx(0.001)
    assert lr_at(80, **kw) == pytest.approx(0.0001)
    assert lr_at(99.9, **kw) == pytest.approx(0.0001)


def test_linear_warmup_hits_the_schedule_without_a_jump():
    kw = dict(base_lr=0.1, policy="step", steps=(40, 80), warmup_epochs=2.0, warmup_start_factor=0.1)
    assert lr_at(0.0, **kw) == pytest.approx(0.01)
    assert lr_at(1.0, **kw) == pytest.approx(0.055)  # halfway between 0.01 and 0.1
    assert lr_at(0.5, **kw) == pytest.approx(0.01 + 0.09 * 0.25)
    assert lr_at(2.0, **kw) == pytest.approx(0.1)
    assert lr_at(1.999999, **kw) == pytest.approx(0.1, rel=1e-5)


def test_cosine_values():
    kw = dict(base_lr=1.0, policy="cosine", max_epoch=10, warmup_epochs=0, cosine_end_factor=0.1)
    assert lr_at(0, **kw) == pytest.approx(1.0)
    assert lr_at(5, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(2.5, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(10, **kw) == pytest.approx(0.1)
    # warmup into cosine ends on the cosine curve
    w = dict(kw, warmup_epochs=1.0, warmup_start_factor=0.0)
    assert lr_at(0.5, **w) == pytest.approx(0.5 * lr_at(1.0, **kw))


def test_errors_name_the_choices():
    with pytest.raises(ValueError, match="cosine.*step"):
        lr_at(1.0, base_lr=0.1, policy="poly")


def test_linear_scaling_rule():
    assert scaled_base_lr(0.01, 44, 44, True) == pytest.approx(0.01)
    assert scaled_base_lr(0.01, 11, 44, True) == pytest.approx(0.0025)  # one GPU, no accumulation
    assert scaled_base_lr(0.01, 11 * 4, 44, True) == pytest.approx(0.01)  # one GPU, ACCUM_STEPS 4
    assert scaled_base_lr(0.01, 8, 44, False) == 0.01


def test_from_paper_config():
    cfg = load_config("ucf101_cgd")
    kw = schedule_kwargs(cfg)  # built once from SOLVER; lr_at is then a pure function of the epoch
    assert lr_at(0.0, base_lr=cfg.SOLVER.BASE_LR, **kw) == pytest.approx(0.001)  # warmup start 0.1 x 0.01
    assert lr_at(1.0, base_lr=cfg.SOLVER.BASE_LR, **kw) == pytest.approx(0.01)
    assert lr_at(50.0, base_lr=cfg.SOLVER.BASE_LR, **kw) == pytest.approx(0.001)
    assert lr_at(85.0, base_lr=0.02, **kw) == pytest.approx(0.0002)

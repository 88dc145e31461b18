"""The training loop on its own (no videos): accumulation equals one large batch, no host reads between
logging steps (CPU: counted; CUDA: torch's sync debug mode), hooks see every stage, compile unwraps."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from cgd_video.engine.checkpoint import unwrap_model
from cgd_video.engine.train_loop import HookBase, TrainLoop
from cgd_video.engine.writers import MetricsHook, MetricsWriter
from cgd_video.runtime import grad_scaler, maybe_compile


def _data(n_batches: int, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 6, generator=g), torch.randint(0, 3, (batch,), generator=g))
            for _ in range(n_batches)]


def _prepare(batch, device):
    return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)


def _loop(data, device="cpu", accum=1, steps_per_epoch=None, lr=0.1):
    torch.manual_seed(0)
    model = nn.Linear(6, 3).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    spe = steps_per_epoch or len(data) // accum
    return TrainLoop(model, opt, grad_scaler(torch.device(device), "none"), lambda epoch, skip: data[skip * accum:],
                     _prepare, torch.device(device), spe, spe, accum_steps=accum)


def test_accumulation_equals_one_large_batch():
    small = _data(4, 2)
    accum = _loop(small, accum=2)
    accum.train(0)
    large = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(small[::2], small[1::2])]
    one = _loop(large)
    one.train(0)
    for p, q in zip(accum.model.parameters(), one.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert accum.iteration == one.iteration == 2


class _Stages(HookBase):
    def __init__(self):
        self.seen = []

    def before_train(self):
        self.seen.append("before_train")

    def before_step(self):
        self.seen.append(f"before_step {self.loop.iteration}")

    def after_step(self):
        self.seen.append(f"after_step {self.loop.iteration}")

    def after_epoch(self):
        self.seen.append(f"after_epoch {self.loop.iteration}")

    def after_train(self):
        self.seen.append("after_train")


def test_hooks_see_every_stage_in_order():
    loop = _loop(_data(4, 2), steps_per_epoch=2)
    loop.max_iter = 4
    loop.batches_for = lambda epoch, skip: _data(2, 2, seed=epoch)[skip:]
    stages = _Stages()
    loop.register([stages])
    loop.train(0)
    assert stages.seen == ["before_train", "before_step 0", "after_step 1", "before_step 1", "after_step 2",
                           "after_epoch 2", "before_step 2", "after_step 3", "before_step 3", "after_step 4",
                           "after_epoch 4", "after_train"]


def test_steps_run_in_train_mode_after_an_evaluation():
    """An epoch-end evaluation puts the model in eval mode; the next epoch's steps must train again
    (BN batch statistics, dropout), as a fresh run would."""
    loop = _loop(_data(4, 2), steps_per_epoch=2)
    loop.max_iter = 4
    loop.batches_for = lambda epoch, skip: _data(2, 2, seed=epoch)[skip:]
    modes = []

    class _Eval(HookBase):
        def after_epoch(self):
            self.loop.model.eval()

    class _Mode(HookBase):
        def before_step(self):
            modes.append(self.loop.model.training)

    loop.model.eval()  # whatever mode it arrives in
    loop.register([_Eval(), _Mode()])
    loop.train(0)
    assert modes == [True] * 4


class _CountReads(HookBase):
    """Counts tensor -> Python reads made inside steps that are not logging steps."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__")

    def __init__(self, log_period):
        self.log_period, self.reads, self._orig = log_period, 0, {}

    def before_step(self):
        if (self.loop.iteration + 1) % self.log_period:
            for name in self.NAMES:
                orig = self._orig.setdefault(name, getattr(torch.Tensor, name))
                setattr(torch.Tensor, name, self._counting(orig))

    def _counting(self, orig):
        def read(t, *a, **k):
            self.reads += 1
            return orig(t, *a, **k)
        return read

    def after_step(self):
        for name, orig in self._orig.items():
            setattr(torch.Tensor, name, orig)


def test_no_host_reads_between_logging_steps_cpu(tmp_path):
    loop = _loop(_data(8, 2))
    counter = _CountReads(log_period=4)
    # the counter wraps only the step: the metrics hook (registered after it) reads at steps 4 and 8
    loop.register([counter, MetricsHook(MetricsWriter(tmp_path, True), log_period=4, max_epoch=1)])
    loop.train(0)
    assert counter.reads == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # train records at 4 and 8, the epoch record


@pytest.mark.cuda
def test_no_host_syncs_between_logging_steps_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data = _data(8, 4)

    class _SyncErrors(HookBase):
        def before_step(self):
            if (self.loop.iteration + 1) % 4:
                torch.cuda.set_sync_debug_mode("error")

        def after_step(self):
            torch.cuda.set_sync_debug_mode("default")

    loop = _loop(data, device="cuda")
    loop.register([_SyncErrors(), MetricsHook(MetricsWriter(tmp_path, True), log_period=4, max_epoch=1)])
    loop.train(0)  # raises "called a synchronizing CUDA operation" on any sync in steps 1-3 and 5-7
    assert loop.iteration == 8


def test_compiled_model_saves_plain_weights():
    model = nn.Linear(4, 2)
    compiled = maybe_compile(model, True)  # wrapping only; nothing is compiled until called
    assert compiled is not model and unwrap_model(compiled) is model
    assert maybe_compile(model, False) is model


def test_world_size_change_is_warned_with_what_is_lost(caplog):
    from cgd_video.engine.checkpointer import _same_world

    # caplog's handler on the logger itself, not capfd: the logger does not propagate, and its stream
    # handler keeps whichever stderr was current when an earlier test created it
    logger = logging.getLogger("cgd_video.train")
    logger.addHandler(caplog.handler)
    try:
        assert _same_world({"world_size": 1}) is True
        assert _same_world({"world_size": 2}) is False  # saved by 2 processes, resumed by this one
    finally:
        logger.removeHandler(caplog.handler)
    err = caplog.text
    assert "no longer bit-identical" in err and "RNG stream" in err and "no sample of the epoch is seen twice" in err

"""Precise BN statistics (``engine/precise_bn.py``): the running statistics become the float64 average of
the batches' own statistics, nothing else changes, ranks agree under gloo, the hook runs at validated
epochs and the last, and a real training run ends with the statistics of its final weights."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cgd_video.engine.precise_bn import PreciseBN, bn_layers, recompute_bn_stats
from cgd_video.engine.train_loop import TrainLoop
from cgd_video.runtime import grad_scaler

CPU = torch.device("cpu")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3))


def _batches(n: int, seed: int = 1, size: int = 6):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 5, generator=g) * 3 + 1, torch.randint(0, 3, (size,), generator=g)) for _ in range(n)]


def _prepare(batch, device):
    return batch[0].to(device), batch[1].to(device)


def _oracle(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64: the mean over batches of each batch's mean and unbiased variance of the BN input."""
    w, b = model[0].weight.double(), model[0].bias.double()
    feats = [x.double() @ w.T + b for x, _ in batches]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    return mean, var


def test_statistics_are_the_average_of_the_batches_and_nothing_else_changes():
    model, batches = _model(), _batches(4)
    model.train()
    bn = model[1]
    bn.momentum = 0.1
    bn.num_batches_tracked.fill_(17)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k}
    rng = torch.get_rng_state()
    assert recompute_bn_stats(model, batches, _prepare, CPU) == 4
    mean, var = _oracle(model, batches)
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.1 and model.training and bn.training
    for k, v in model.state_dict().items():
        if "running" not in k:
            assert torch.equal(v, weights[k]), k  # num_batches_tracked included
    assert torch.equal(torch.get_rng_state(), rng), "dropout drew random numbers"


def test_no_batches_changes_nothing():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model[1].running_mean.fill_(0.5)
    before["1.running_mean"].fill_(0.5)
    assert recompute_bn_stats(model, [], _prepare, CPU) == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_eval_mode_is_restored():
    model = _model().eval()
    recompute_bn_stats(model, _batches(2), _prepare, CPU)
    assert not model.training and not model[1].training


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _model()
        recompute_bn_stats(model, _batches(3, seed=10 + rank), _prepare, CPU)
        torch.save({"mean": model[1].running_mean, "var": model[1].running_var}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ranks_end_with_the_average_of_their_statistics(tmp_path):
    out = str(tmp_path / "stats")
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    got = [torch.load(f"{out}.{r}") for r in range(2)]
    assert torch.equal(got[0]["mean"], got[1]["mean"]) and torch.equal(got[0]["var"], got[1]["var"])
    single = [_oracle(_model(), _batches(3, seed=10 + r)) for r in range(2)]
    torch.testing.assert_close(got[0]["mean"].double(), (single[0][0] + single[1][0]) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[0]["var"].double(), (single[0][1] + single[1][1]) / 2, rtol=1e-5, atol=1e-6)


def test_hook_runs_after_validated_epochs_and_the_last():
    data = _batches(2, seed=5)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TrainLoop(model, opt, grad_scaler(CPU, "none"), lambda epoch, skip: data[skip:], _prepare, CPU,
                     steps_per_epoch=2, max_iter=10)
    asked = []

    def batches(epoch, n):
        asked.append((epoch, n))
        return data[:n]

    loop.register([PreciseBN(num_batches=1, period=2, max_epoch=5, batches=batches)])
    loop.train(0)
    assert asked == [(1, 1), (3, 1), (4, 1)]  # after epochs 2, 4 and 5 (0-based 1, 3, 4)
    mean, var = _oracle(model, data[:1])  # the final weights' statistics of the first batch
    torch.testing.assert_close(model[1].running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var.double(), var, rtol=1e-5, atol=1e-6)


def test_off_by_default_never_asks_for_batches():
    loop = TrainLoop(_model(), torch.optim.SGD(_model().parameters(), lr=0.1), grad_scaler(CPU, "none"),
                     lambda epoch, skip: _batches(2)[skip:], _prepare, CPU, steps_per_epoch=2, max_iter=4)
    loop.register([PreciseBN(num_batches=0, period=1, max_epoch=2, batches=lambda e, n: pytest.fail("asked"))])
    loop.train(0)


@pytest.mark.slow
def test_a_training_run_ends_with_the_statistics_of_its_final_weights(synthetic_dataset, tmp_path):
    from cgd_video.boundary.training import build_job, train_from_config
    from cgd_video.config import load_config
    from cgd_video.engine import distributed as du
    from cgd_video.engine.checkpoint import load_checkpoint

    from _train_helpers import tiny_opts, write_tiny_lists

    lists = write_tiny_lists(synthetic_dataset, tmp_path / "lists")
    cfg = load_config("synthetic_cgd", tiny_opts(lists, synthetic_dataset, tmp_path / "run", **{
        "SOLVER.MAX_EPOCH": 1, "TRAIN.PRECISE_BN_BATCHES": 2}))
    torch.set_num_threads(1)
    assert train_from_config(cfg)["status"] == "finished"
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]

    job = build_job(cfg)  # the oracle: the final weights' statistics over the epoch's first two batches
    model = job.build_model()
    model.load_state_dict(trained)
    for m in bn_layers(model):
        m.reset_running_stats()
    job.train_dataset.set_epoch(0)
    order = du.epoch_order(len(job.train_dataset), cfg.SEED, 0)
    batches = [job.train_dataset.collate_fn([job.train_dataset[i] for i in order[k:k + 2]])
               for k in (0, 2)]
    assert recompute_bn_stats(model, batches, job.prepare_batch, CPU) == 2
    got = model.state_dict()
    stats = [k for k in trained if "running_" in k]
    assert stats
    for k in stats:
        torch.testing.assert_close(trained[k], got[k], rtol=1e-5, atol=1e-6, msg=k)

"""benchmarks/bench_model.py end to end on a tiny input: the JSON schema only, never the timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RATIOS = ("ours_vs_pytorchvideo_forward", "cgd_shared_overhead_train", "cgd_concat_overhead_train",
          "nl_overhead_train", "cgnl_overhead_train")


@pytest.mark.slow
def test_bench_model_json_schema(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model

    out = tmp_path / "bench.json"
    argv = ["--frames", "8", "--ptv-frames", "4", "--size", "64", "--pairs", "1", "--warmup", "0",
            "--variants", "fp32", "--threads", "1", "--json", str(out)]
    assert bench_model.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    assert result["inputs"]["overhead"] == [1, 3, 8, 64, 64]
    for key in RATIOS:
        assert result["ratios"][key] > 0
        assert result["variants"]["fp32"]["ratio_spread"][key]["pairs"] == 1
    models = result["variants"]["fp32"]["models"]
    assert set(models) == {"ours_pytorchvideo8", "pytorchvideo_c2d_r50", "c2d", "cgd_shared", "cgd_concat", "nl", "cgnl"}
    assert all(m["forward_ms"] > 0 for m in models.values())
    assert all("train_ms" in models[k] for k in ("c2d", "cgd_shared", "cgd_concat", "nl", "cgnl"))


def test_bench_model_no_memory_skips_the_rss_child(tmp_path):
    """``--no-memory`` (the compiled CPU variants would compile every case again in the child): timings
    only, and the JSON says memory was not measured instead of reporting a number."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model

    out = tmp_path / "bench.json"
    argv = ["--frames", "8", "--size", "64", "--pairs", "1", "--warmup", "0", "--variants", "fp32", "--threads", "1",
            "--no-ptv", "--models", "c2d,cgd_shared", "--modes", "train", "--no-memory", "--json", str(out)]
    assert bench_model.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["memory_method"].startswith("not measured")
    models = result["variants"]["fp32"]["models"]
    assert set(models) == {"c2d", "cgd_shared"} and all(m["train_peak_bytes"] is None for m in models.values())
    assert result["ratios"]["cgd_shared_overhead_train"] > 0
    assert {"compile_fp32", "compile_channels_last"} <= set(bench_model.VARIANTS)


def test_bench_model_floors_replace_every_cgd_and_keep_the_gradient():
    """The floor models (``--models floor_identity,floor_mean_scale``) are the CGD network with each CGD
    module swapped for a stand-in that leaves the features unchanged: same logits as C2D-R50 with the
    same weights, and the input gradient flows."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model
    from cgd_video.models.cgd import CGD

    torch.manual_seed(0)
    c2d = bench_model.build_ours("c2d_r50", {}, 8, "nonlocal32").eval()
    x = torch.randn(1, 3, 8, 32, 32, requires_grad=True)
    for key in bench_model.FLOORS:
        floor = bench_model.build_ours(*bench_model.OVERHEAD_MODELS[key], 8, "nonlocal32", key).eval()
        assert not any(isinstance(m, CGD) for m in floor.modules())
        assert sum(isinstance(m, bench_model._Floor) for m in floor.modules()) == 16
        floor.load_state_dict(c2d.state_dict(), strict=False)
        out = floor(x)
        assert torch.allclose(out, c2d(x), atol=1e-5), key
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert grad.abs().sum() > 0


def test_bench_model_rejects_unknown_variant(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model

    with pytest.raises(SystemExit):
        bench_model.parse_args(["--variants", "fp32,fp8"])
    err = capsys.readouterr().err
    assert "fp8" in err and "channels_last" in err  # names the bad value and lists the valid ones


def test_bench_data_item_ratio_summary_is_over_paired_items():
    """bench_data's item ratios: median, p25 and p75 of the per-item ``before / after`` (not of sums)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_data

    before = [1.0, 2.0, 3.0, 4.0, 100.0]  # one item hit by a burst of load: sums would move, medians not
    after = [0.5, 1.0, 1.0, 2.0, 100.0]
    s = bench_data.ratio_summary(before, after)
    assert s == {"median": 2.0, "p25": 2.0, "p75": 2.0, "items": 5}
    s = bench_data.ratio_summary([2.0, 3.0, 4.0, 6.0], [1.0, 1.0, 1.0, 1.0])
    assert s["median"] == 3.5 and s["p25"] == 2.75 and s["p75"] == 4.5 and s["items"] == 4


def test_bench_timeline_quick_json_schema(tmp_path):
    """benchmarks/bench_timeline.py --quick: both containers x both views, per-window vs one-pass items
    asserted equal inside the run, ratios present (the timings themselves are not checked)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_timeline

    out = tmp_path / "timeline.json"
    result = bench_timeline.main(["--quick", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    keys = {f"timeline_one_pass_speedup_{s}_{v}" for s in bench_timeline.SETS for v in bench_timeline.VIEWS}
    assert set(result["ratios"]) == keys and all(r > 0 for r in result["ratios"].values())
    assert all(r["windows"] == 4 for r in result["results"].values())


def test_bench_model_eager_key_holds_cgd_to_the_eager_function():
    """``cgd_shared_eager``: the same network as ``cgd_shared`` whose CGD modules never take the native op,
    so one run times both CPU paths."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model
    from cgd_video.models.cgd import CGD

    for key, native in (("cgd_shared", True), ("cgd_shared_eager", False)):
        model = bench_model.build_ours(*bench_model.OVERHEAD_MODELS[key], 8, "nonlocal32", key)
        cgds = [m for m in model.modules() if isinstance(m, CGD)]
        assert len(cgds) == 16 and all(m._native is native for m in cgds), key


def test_bench_cgd_op_json_schema(tmp_path):
    """benchmarks/bench_cgd_op.py on a tiny clip: every CGD module of the network found, the native op
    checked against the eager Function inside the run, ratios present (timings not checked)."""
    from cgd_video.models import cgd_native

    if cgd_native.load() is None:
        pytest.skip("the native CGD op could not be built here")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_cgd_op

    out = tmp_path / "op.json"
    argv = ["--frames", "8", "--size", "64", "--rounds", "1", "--no-baseline", "--json", str(out)]
    assert bench_cgd_op.main(argv) == 0
    result = json.loads(out.read_text())
    assert {r["modules"] for r in result["layouts"].values()} == {16}
    assert set(result["ratios"]) == {f"{a}_vs_{b}_{layout}" for layout in ("contiguous", "channels_last")
                                     for a, b in (("eager", "native"), ("native", "floor"))}
    assert all(r > 0 for r in result["ratios"].values())


def test_bench_checkpoint_json_schema_and_both_writers_store_the_same_checkpoint(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_checkpoint
    import torch

    out = tmp_path / "ckpt.json"
    assert bench_checkpoint.main(["--depth", "18", "--rounds", "2", "--dir", str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["ratios"]) == ["save_time_memory_vs_streamed"] and result["ratios"]["save_time_memory_vs_streamed"] > 0
    assert result["checkpoint_mb"] > 40 and set(result["peak_rss_added_mb"]) == {"memory", "streamed"}  # R18 + momentum
    assert result["peak_rss_added_mb"]["memory"] > 30  # the in-memory copy of the checkpoint shows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json"]  # its folder removed, nothing left
    model, opt = bench_checkpoint._trained(18)
    for way, writer in bench_checkpoint.WAYS.items():
        writer({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / f"{way}.pt")
    a, b = (torch.load(tmp_path / f"{w}.pt", weights_only=True) for w in ("memory", "streamed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()

"""Parameter and MAC tables of our models next to the paper's Table 3 (video) and Table 11 (image).

Every figure comes from the real counter in :mod:`cgd_video.utils.cost`; nothing is hand arithmetic.
Rows: baseline C2D-R50, +NL (one block in res4), +CGNL (groups 8 and 1), +CGD v10 in every temporal
mode. Delta_N divides each extra cost by a reference CGD row's.

Per-view and per-video costs (PROTOCOL §6) are counted for the inputs actually run:

* **per view** at the training clip (1×3×T×224², the paper's Table 3 input);
* **per video** for each dataset's test protocol (:class:`EvalProtocol`): the counter on one test
  view at the protocol's crop size, times its views. UCF-101 tests 1 clip × 1 crop, Mini-Kinetics
  10 clips × 3 crops, both at 256² (shorter side 256): a 256² view costs about (256/224)² ≈ 1.31×
  a 224² one, so per-video is *not* per-view(224²) × views.

``tools/cost.py`` is the command line; it reads the test protocols from the dataset configs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm import tqdm

from cgd_video.models import create_model
from cgd_video.models.layouts import TemporalLayout
from cgd_video.utils.cost import COUNTED_OPS, EXCLUDED_OPS, cgd_cost, count_macs, count_params

__all__ = ["IMAGE_LAYOUT", "Row", "EvalProtocol", "TABLE3", "TABLE11", "measure", "normalise", "render",
           "convention", "baseline_note"]

# A 2-D ResNet on one image: no temporal subsampling anywhere (Table 11, Table 6).
IMAGE_LAYOUT = TemporalLayout(1, 1, 1, 3, 1, 1)


@dataclass(frozen=True)
class Row:
    """One table row: a registered model with overrides and the paper's printed figures."""

    name: str
    model: str
    kwargs: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)  # params / delta_n_params / macs / delta_n_macs as printed
    is_cgd: bool = False


@dataclass(frozen=True)
class EvalProtocol:
    """A dataset's test views: ``clips`` × ``crops`` views of ``crop``² pixels per video."""

    name: str
    clips: int
    crops: int
    crop: int

    @property
    def views(self) -> int:
        return self.clips * self.crops

    @property
    def label(self) -> str:
        return f"{self.name} {self.clips}x{self.crops}@{self.crop}"


def _cgd_rows(paper: dict) -> list[Row]:
    return [
        Row(f"+CGD v10 {mode}", "c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": mode}},
            paper, is_cgd=True)
        for mode in ("shared", "mean", "frame", "concat")
    ]


# Table 3 (32x3x224x224 clips). The paper's CGD row (+0.095M MACs) does not name its temporal mode;
# 0.095M equals 6 * sum(C*T) = 95,232, the O(C*T) work of the concat / frame forms.
TABLE3: list[Row] = [
    Row("C2D-R50 (baseline)", "c2d_r50", {}, {"params": "25.56M", "macs": "17.87G"}),
    Row("+NL (1 block, res4)", "c2d_r50_nl", {},
        {"params": "+2.10M", "delta_n_params": "105x", "macs": "+1.80G", "delta_n_macs": "11^4x"}),
    Row("+CGNL g=8 (1 block, res4)", "c2d_r50_cgnl", {},
        {"params": "+1.64M", "delta_n_params": "82x", "macs": "+1.29G", "delta_n_macs": "10^4x",
         "note": "Mini-Kinetics row"}),
    Row("+CGNL g=1 (1 block, res4)", "c2d_r50_cgnl_g1", {},
        {"params": "+2.10M", "delta_n_params": "105x", "macs": "+1.64G", "delta_n_macs": "11^4x",
         "note": "UCF-101 row"}),
    *_cgd_rows({"params": "+0.02M", "delta_n_params": "1x", "macs": "+0.095M", "delta_n_macs": "1x"}),
]

# Table 11 (ResNet-50 on one 3x800x800 image; CGD in res2..res5, the temporal modes coincide at T=1).
TABLE11: list[Row] = [
    Row("ResNet-50 image (baseline)", "c2d_r50", {}, {}),
    Row("+NL (1 block, res4)", "c2d_r50_nl", {},
        {"params": "+2.10M", "delta_n_params": "92x", "macs": "+6.84G", "delta_n_macs": "12^5x"}),
    Row("+CGNL g=8 (1 block, res4)", "c2d_r50_cgnl", {},
        {"params": "+1.64M", "delta_n_params": "72x", "macs": "+4.10G", "delta_n_macs": "11^5x"}),
    Row("+CGD v10 (res2-5)", "c2d_r50_cgd", {"attention_kwargs": {"variant": "v10", "temporal": "shared"}},
        {"params": "+0.02M", "delta_n_params": "1x", "macs": "+0.02M", "delta_n_macs": "1x"}, is_cgd=True),
]


def _si(value: float, signed: bool = False) -> str:
    sign = "+" if signed and value >= 0 else ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{sign}{value / scale:.3f}{unit}" if unit != "G" else f"{sign}{value / scale:.2f}{unit}"
    return f"{sign}{value:.0f}"


def _count(model: torch.nn.Module, x: torch.Tensor, is_cgd: bool) -> dict:
    """MACs of one view; CGD rows: the O(C) vector work and the element counts of its X passes."""
    if is_cgd:
        cgd = cgd_cost(model, x)
        return {"cgd_vector_macs": cgd.vector_macs, "cgd_pool_elements": cgd.pool_elements,
                "cgd_rescale_elements": cgd.rescale_elements, "cgd_modules": cgd.modules, "skipped_ops": cgd.skipped}
    count = count_macs(model, x)
    return {"macs": count.total, "macs_by_operator": count.by_operator, "skipped_ops": count.skipped,
            "macs_by_stage": {k: v for k, v in count.by_module.items() if k and "." not in k and v}}


def measure(
    rows: Sequence[Row], model_kwargs: dict, shape: tuple[int, ...], desc: str,
    protocols: Sequence[EvalProtocol] = (),
) -> list[dict]:
    """Params and per-view MACs of every row at ``shape``, and per-video MACs for each test protocol.

    A protocol's per-video figure is the counter on one (1, 3, T, crop, crop) view times its views;
    CGD rows add their O(C) vector MACs to the baseline's count at the same input (as per view).
    """
    torch.manual_seed(0)
    inputs = {shape[-1]: torch.randn(*shape)}
    for p in protocols:
        inputs.setdefault(p.crop, torch.randn(*shape[:-2], p.crop, p.crop))
    results: list[dict] = []
    for row in tqdm(rows, desc=desc, leave=False, file=sys.stderr):
        model = create_model(row.model, **model_kwargs, **row.kwargs).eval()
        entry = {"name": row.name, "model": row.model, "kwargs": row.kwargs, "input": list(shape),
                 "params": count_params(model), **_count(model, inputs[shape[-1]], row.is_cgd)}
        entry["per_video"] = {p.name: {"clips": p.clips, "crops": p.crops, "views": p.views, "crop": p.crop,
                                       **_count(model, inputs[p.crop], row.is_cgd)} for p in protocols}
        entry["paper"] = row.paper
        results.append(entry)
    base = results[0]
    for entry in results:
        entry["delta_params"] = entry["params"] - base["params"]
        for target, ref in [(entry, base), *((entry["per_video"][k], base["per_video"][k]) for k in entry["per_video"])]:
            if "cgd_vector_macs" in target:  # O(C) vector work only; the X passes are reported apart
                target["macs"] = ref["macs"] + target["cgd_vector_macs"]
        entry["delta_macs"] = entry["macs"] - base["macs"]
    for entry in results:  # per-view counts at the protocol's crop -> per video
        for video in entry["per_video"].values():
            video["macs_per_view"] = video.pop("macs")
            video["macs_per_video"] = video["macs_per_view"] * video["views"]
    return results


def normalise(results: list[dict], reference: str) -> None:
    """Delta_N: each row's extra params / MACs divided by the reference CGD row's."""
    ref = next((r for r in results if r["name"].endswith(reference) or r["name"] == reference), None)
    ref = ref or next(r for r in results if "cgd_vector_macs" in r)
    for r in results[1:]:
        r["delta_n_params"] = r["delta_params"] / ref["delta_params"]
        r["delta_n_macs"] = r["delta_macs"] / ref["delta_macs"]
        r["delta_n_reference"] = ref["name"]


def _ratio(value: float) -> str:
    return f"{value:,.0f}x" if value >= 10 else f"{value:.3g}x"


def render(results: list[dict], title: str, protocols: Sequence[EvalProtocol] = ()) -> str:
    """The table as aligned text: per view at the training input, per video per test protocol."""
    size = results[0]["input"][-1]
    head = ["Row", "#Params", "dParams", f"MACs/view @{size}", "dMACs", "dN P", "dN M",
            *(f"MACs/video {p.label}" for p in protocols),
            "CGD pool+rescale elems", "paper #Params", "paper dN P", "paper MACs", "paper dN M"]
    lines = []
    for i, r in enumerate(results):
        p = r["paper"]
        cgd_pass = (f"{_si(r['cgd_pool_elements'])}+{_si(r['cgd_rescale_elements'])}"
                    if "cgd_pool_elements" in r else "-")
        lines.append([
            r["name"], f"{r['params']:,}",
            "-" if i == 0 else f"{r['delta_params']:+,}",
            _si(r["macs"]), "-" if i == 0 else _si(r["delta_macs"], signed=True),
            "-" if i == 0 else _ratio(r["delta_n_params"]),
            "-" if i == 0 else _ratio(r["delta_n_macs"]),
            *(_si(r["per_video"][proto.name]["macs_per_video"]) for proto in protocols), cgd_pass,
            p.get("params", "-"), p.get("delta_n_params", "-"), p.get("macs", "-"), p.get("delta_n_macs", "-"),
        ])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title, fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in lines]
    return "\n".join(out)


def convention(results: list[dict], protocols: Sequence[EvalProtocol] = ()) -> str:
    """The counting convention and the ops the traces skipped, as printed under the tables."""
    skipped: dict[str, int] = {}
    for r in results:
        for op, n in r.get("skipped_ops", {}).items():
            skipped[op] = skipped.get(op, 0) + n
    videos = "; ".join(f"{p.name}: {p.clips} clip(s) x {p.crops} crop(s) of {p.crop}x{p.crop} = {p.views} views"
                       for p in protocols) or "none"
    return "\n".join([
        "Convention: 1 multiply-add = 1 MAC (fvcore FlopCountAnalysis, JIT trace of a real forward, eval mode).",
        f"  counted: {', '.join(COUNTED_OPS)} (mul, addcmul = element-wise tensor products: CGNL's <phi,g> and its",
        "           scaling of theta, CGD's O(C) stages; one MAC per output element)",
        f"  excluded on purpose: {', '.join(EXCLUDED_OPS)}; ReLU, pooling, softmax, tanh, add, bias",
        "  skipped ops seen in these traces (calls, all rows): "
        + (", ".join(f"{k.removeprefix('aten::')} {v}" for k, v in sorted(skipped.items())) or "none"),
        "  MACs/view: one training clip/image as given. MACs/video: the counter on one test view at the",
        f"           protocol's crop size, times its views ({videos}).",
        "  CGD rows: dMACs = O(C) vector work only (counter on CGD.descriptor, as the paper's +0.095M/+0.02M);",
        "           its passes over X are listed apart as element counts: pooling reads + rescaling",
        "           X*(1+y) products (in eval mode the rescale is folded into the next BN's affine pass).",
    ])


def baseline_note(base: dict, num_classes: int, frames: int) -> str:
    """Why our baseline differs from the paper's 25.56M / 17.87G (params of the 1000-class head counted)."""
    ref = create_model("c2d_r50", num_classes=1000, num_frames=frames)
    img = create_model("c2d_r50", num_classes=1000, num_frames=1, layout=IMAGE_LAYOUT).eval()
    img_macs = count_macs(img, torch.randn(1, 3, 1, 224, 224)).total
    stages = ", ".join(f"{k} {_si(v)}" for k, v in base["macs_by_stage"].items())
    return "\n".join([
        f"Baseline: {base['params']:,} params with a {num_classes}-class fc; with the 1000-class ImageNet head "
        f"{count_params(ref):,} (the paper's 25.56M).",
        f"  MACs {_si(base['macs'])} per view vs the paper's 17.87G: standard counting does not reproduce 17.87G.",
        f"  Per stage ({stages}): conv1 runs on 16 frames, res2 on 8, res3-res5 on 4 (Non-local C2D layout).",
        f"  For reference the same counter gives {_si(img_macs)} for ResNet-50 on one 224x224 image, where the paper's",
        "  Table 6 prints 3.858G: its counter was not the standard one, so its video figure is not comparable either.",
    ])

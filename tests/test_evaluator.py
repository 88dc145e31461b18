"""Evaluator: video_scores (mean of per-view softmax, uint8 views normalised on the device), label -1
(no ground truth) scored but left out of the metrics, paths kept per video, and both accuracies
(over the decoded videos, and with undecodable ones counted as wrong: TEST.FAILED_AS_WRONG)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cgd_video.data.transforms import normalize_views
from cgd_video.engine.evaluator import eval_metrics, evaluate, video_scores
from cgd_video.engine.testing import results_summary, write_test_outputs
from cgd_video.engine.metrics import classification_metrics, confusion_matrix

K, V, SHAPE = 4, 3, (3, 2, 4, 4)
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), K)).eval()


def _views(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, V, *SHAPE), dtype=np.uint8))


def test_video_scores_is_the_mean_softmax_of_normalised_views():
    model, views = _model(), _views(2)
    got = video_scores(model, views, MEAN, STD)
    # float64 oracle: normalise, run the same linear layer, softmax each view, average per video.
    x = (views.double() / 255 - torch.tensor(MEAN).double().view(3, 1, 1, 1)) / torch.tensor(STD).double().view(3, 1, 1, 1)
    lin = model[1]
    logits = x.flatten(2) @ lin.weight.double().T + lin.bias.double()
    ref = logits.softmax(-1).mean(1)
    assert got.shape == (2, K) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)
    # Float views (already normalised) go in as they are; channels_last gives the same scores.
    floats = normalize_views(views, MEAN, STD).view(2, V, *SHAPE)
    torch.testing.assert_close(video_scores(model, floats), got, atol=1e-7, rtol=0)
    torch.testing.assert_close(video_scores(model, views, MEAN, STD, channels_last=True), got, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, V, 3, T, S, S\)"):
        video_scores(model, views[0])


class _Items(list):
    """A stand-in MultiViewTestDataset: ``ds[i]`` dicts, with the normalisation it asks for."""

    mean, std = MEAN, STD


def test_evaluate_scores_unlabelled_videos_but_leaves_them_out_of_the_metrics(tmp_path):
    model, views = _model(1), _views(6, seed=1)
    labels = [0, -1, 2, 1, -1, 3]
    ds = _Items(
        {"views": views[i] if i != 3 else torch.zeros_like(views[i]), "label": labels[i], "index": i,
         "ok": i != 3, "error": "" if i != 3 else "truncated", "path": f"v{i}.mp4"}
        for i in range(6)
    )
    res = evaluate(model, ds, K, batch_size=4, progress=False)
    assert res.paths == [f"v{i}.mp4" for i in range(6)]
    expected = video_scores(model, views, MEAN, STD)
    torch.testing.assert_close(res.scores[[0, 1, 2, 4, 5]], expected[[0, 1, 2, 4, 5]], atol=1e-6, rtol=0)
    assert torch.isnan(res.scores[3]).all() and res.errors == {3: "truncated"}
    assert res.labels.tolist() == labels
    assert res.scored.tolist() == [True, False, True, False, False, True]
    want = classification_metrics(expected[[0, 2, 5]], torch.tensor([0, 2, 3]))
    for key in ("top1", "top5", "mean_class_acc"):
        assert res.metrics[key] == pytest.approx(want[key])
    assert (res.metrics["num_videos"], res.metrics["num_failed"], res.metrics["num_unlabeled"],
            res.metrics["num_scored"]) == (6, 1, 2, 3)
    files = write_test_outputs(tmp_path, results_summary(res, 3, 1, "ckpt.pt"), res, ["a", "b", "c", "d"], topk=2)
    rows = files["predictions"].read_text().splitlines()
    assert rows[2].startswith("v1.mp4,-1,,ok,")  # unlabelled: still predicted
    assert rows[4].startswith("v3.mp4,1,b,error,")
    on_disk = json.loads(files["results"].read_text())
    assert on_disk["num_unlabeled"] == 2 and on_disk["failed"] == [{"path": "v3.mp4", "error": "truncated"}]
    assert on_disk["views"] == {"num_clips": 3, "num_crops": 1, "per_video": 3}
    # the labelled failed video (label 1) counts as wrong in the second set: 4 labelled videos, not 3
    assert on_disk["top1_failed_as_wrong"] == pytest.approx(want["top1"] * 3 / 4)
    assert on_disk["top1"] == on_disk["top1_decoded"] == pytest.approx(want["top1"])


def test_metrics_ignore_label_minus_one_and_reject_other_bad_labels():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = classification_metrics(scores, torch.tensor([0, -1, 1]))
    assert m["top1"] == pytest.approx(0.5) and m["mean_class_acc"] == pytest.approx(0.5)
    assert confusion_matrix(torch.tensor([0, 1, 0]), torch.tensor([0, -1, 1]), 2).tolist() == [[1, 0], [1, 0]]
    assert np.isnan(classification_metrics(scores, torch.tensor([-1, -1, -1]))["top1"])
    for bad in (2, -2):
        with pytest.raises(ValueError, match=r"outside \[0, 2\) and not -1"):
            classification_metrics(scores, torch.tensor([0, bad, 1]))


def test_both_accuracies_against_a_hand_count():
    """6 labelled videos of 3 classes (K=6 so that top-5 can miss), 2 of them undecodable.

    Decoded: v0 (class 0, right), v1 (class 0, wrong; label 2nd), v2 (class 1, right), v4 (class 2,
    wrong; label ranked last). Failed: v3 (class 1), v5 (class 2). v6: no label (left out of both)."""
    k = 6
    scores = torch.full((7, k), float("nan"))
    order = {0: [0, 1, 2, 3, 4, 5], 1: [3, 0, 1, 2, 4, 5], 2: [1, 0, 2, 3, 4, 5], 4: [0, 1, 3, 4, 5, 2], 6: [5, 4, 3, 2, 1, 0]}
    for i, ranking in order.items():
        for rank, c in enumerate(ranking):
            scores[i, c] = 0.5 ** (rank + 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, -1])
    ok = torch.tensor([True, True, True, False, True, False, True])
    m = eval_metrics(scores, labels, ok)
    # decoded: top1 2/4 right (v0, v2), top5 3/4 (v4's label is 6th); per class 1/2, 1/1, 0/1
    assert m["top1_decoded"] == pytest.approx(2 / 4) and m["top5_decoded"] == pytest.approx(3 / 4)
    assert m["mean_class_acc_decoded"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # failed as wrong: 6 labelled videos; per class 1/2, 1/2, 0/2
    assert m["top1_failed_as_wrong"] == pytest.approx(2 / 6) and m["top5_failed_as_wrong"] == pytest.approx(3 / 6)
    assert m["mean_class_acc_failed_as_wrong"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert m["top1"] == m["top1_decoded"] and m["mean_class_acc"] == m["mean_class_acc_decoded"]
    strict = eval_metrics(scores, labels, ok, failed_as_wrong=True)
    assert strict["top1"] == strict["top1_failed_as_wrong"] and strict["top5"] == pytest.approx(3 / 6)
    # nothing failed: the two sets agree; nothing decoded: decoded is NaN, failed-as-wrong is 0
    all_ok = eval_metrics(scores[[0, 1, 2, 4]], labels[[0, 1, 2, 4]], torch.ones(4, dtype=torch.bool))
    assert all(all_ok[f"{n}_decoded"] == all_ok[f"{n}_failed_as_wrong"] for n in ("top1", "top5", "mean_class_acc"))
    none_ok = eval_metrics(scores, labels, torch.zeros(7, dtype=torch.bool))
    assert np.isnan(none_ok["top1_decoded"]) and none_ok["top1_failed_as_wrong"] == 0.0
    assert none_ok["mean_class_acc_failed_as_wrong"] == 0.0

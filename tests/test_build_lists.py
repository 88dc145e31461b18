"""List builders against the official UCF-101 split files, the Mini-Kinetics-200 id lists, class folders,
and the build_lists CLI on the synthetic dataset."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from cgd_video.data.list_builders import (
    build_folder_lists,
    build_minikinetics_lists,
    build_ucf101_lists,
    read_kinetics_csv,
)
from cgd_video.data.lists import VideoRecord, read_classes, read_video_list

from _train_helpers import run_tool  # noqa: E402

UCF_COUNTS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}


def _official(splits: Path, name: str) -> list:
    """Raw lines of an official split file, CRLF removed by hand (the oracle)."""
    raw = (splits / name).read_bytes().decode()
    assert raw.endswith("\r\n") and raw.count("\n") == raw.count("\r\n")
    return raw[:-2].split("\r\n")


@pytest.fixture(scope="module")
def ucf(shared_data, tmp_path_factory):
    """The official split files + a root of empty placeholder videos for a subset of the classes
    (every 10th, and HandstandPushups), minus two removed files; the other videos count as missing."""
    splits = shared_data / "ucfTrainTestlist"
    root = tmp_path_factory.mktemp("UCF-101")
    videos = {line.split(" ")[0] for n in (1, 2, 3) for line in _official(splits, f"trainlist0{n}.txt")}
    assert len(videos) == 13320
    classes = [line.split(" ")[1] for line in _official(splits, "classInd.txt")]
    present_classes = set(classes[::10]) | {"HandstandPushups"}
    present = {rel for rel in videos if rel.split("/")[0] in present_classes}
    present -= {"Archery/v_Archery_g01_c01.avi", "YoYo/v_YoYo_g25_c05.avi"}
    for folder in present_classes:
        (root / folder).mkdir()
    for rel in present:
        os.close(os.open(root / rel, os.O_CREAT | os.O_WRONLY, 0o644))
    return splits, root, present


def test_ucf101_counts_labels_and_missing(ucf):
    splits, root, present = ucf
    lists = build_ucf101_lists(splits, root)
    classes = [line.split(" ")[1] for line in _official(splits, "classInd.txt")]
    assert lists.classes == classes and len(classes) == 101 and classes[-1] == "YoYo"
    assert len(lists.missing) == 13320 - len(present) and not set(lists.missing) & present
    assert {"Archery/v_Archery_g01_c01.avi", "YoYo/v_YoYo_g25_c05.avi"} <= set(lists.missing)
    for n, (n_train, n_test) in UCF_COUNTS.items():
        train, test = lists.lists[f"train_split{n}"], lists.lists[f"test_split{n}"]
        official_train = [line.split(" ") for line in _official(splits, f"trainlist0{n}.txt")]
        official_test = _official(splits, f"testlist0{n}.txt")
        assert (len(official_train), len(official_test)) == (n_train, n_test)
        assert f"split {n}: {n_train} train + {n_test} test listed" in lists.notes
        assert len(test) == sum(p in present for p in official_test) > 0
        # Labels: 1-based in the official train list, 0-based in ours; no CR left anywhere.
        expected = [VideoRecord(p, int(label) - 1) for p, label in official_train if p in present]
        assert train == expected and len(expected) > 0
        assert not {r.path for r in train} & {r.path for r in test}
        assert all(not r.path.endswith("\r") and 0 <= r.label < 101 for r in train + test)
        official_paths = {p for p, _ in official_train} | set(official_test)
        assert len(official_paths) == 13320 and {r.path for r in train + test} <= official_paths


def test_ucf101_label_follows_folder_not_file_name(ucf):
    splits, root, _ = ucf
    lists = build_ucf101_lists(splits, root)
    name_pattern = re.compile(r"^([^/]+)/v_(.+)_g\d\d_c\d\d\.avi$")
    mismatched = []
    for records in lists.lists.values():
        for r in records:
            folder, file_class = name_pattern.match(r.path).groups()
            if folder != file_class:
                mismatched.append(r)
                assert r.label == lists.classes.index(folder)
    # The real trap in the official files: HandstandPushups/v_HandStandPushups_gXX_cYY.avi
    assert any(r.path.startswith("HandstandPushups/v_HandStandPushups_") for r in mismatched)
    assert "HandStandPushups" not in lists.classes
    test_trap = [r for r in lists.lists["test_split1"] if r.path.startswith("HandstandPushups/")]
    assert test_trap and {r.label for r in test_trap} == {lists.classes.index("HandstandPushups")} == {36}


def test_ucf101_finds_reencoded_mp4_and_rejects_inconsistent_labels(tmp_path):
    splits, root = tmp_path / "splits", tmp_path / "root"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes(b"1 Alpha\r\n2 Beta\r\n")
    (splits / "trainlist01.txt").write_bytes(b"Alpha/v_Alpha_g01_c01.avi 1\r\nBeta/v_Beta_g01_c01.avi 2\r\n")
    (splits / "testlist01.txt").write_bytes(b"Beta/v_Beta_g02_c01.avi\r\n")
    for rel in ("Alpha/v_Alpha_g01_c01.mp4", "Beta/v_Beta_g01_c01.avi"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    lists = build_ucf101_lists(splits, root)
    assert lists.lists["train_split1"] == [VideoRecord("Alpha/v_Alpha_g01_c01.mp4", 0),
                                           VideoRecord("Beta/v_Beta_g01_c01.avi", 1)]
    assert lists.lists["test_split1"] == [] and lists.missing == ["Beta/v_Beta_g02_c01.avi"]
    assert any("split 2 skipped" in note for note in lists.notes)
    (splits / "trainlist01.txt").write_bytes(b"Alpha/v_Alpha_g01_c01.avi 1\r\nBeta/v_Beta_g01_c01.avi 1\r\n")
    with pytest.raises(ValueError, match=r"trainlist01\.txt:2: label 1 disagrees with folder 'Beta'"):
        build_ucf101_lists(splits, root)
    (splits / "testlist01.txt").write_bytes(b"Gamma/v_Gamma_g02_c01.avi\r\n")
    (splits / "trainlist01.txt").write_bytes(b"Alpha/v_Alpha_g01_c01.avi 1\r\n")
    with pytest.raises(ValueError, match=r"testlist01\.txt:1: class folder 'Gamma' is not in classInd"):
        build_ucf101_lists(splits, root)


def test_cli_ucf101_on_synthetic_dataset(synthetic_dataset, tmp_path):
    out = tmp_path / "lists"
    printed = run_tool("build_lists.py", "ucf101", "--splits", str(synthetic_dataset / "splits"),
                           "--root", str(synthetic_dataset / "videos"), "--out", str(out))
    assert "split 2 skipped" in printed and "missing files: 0" in printed
    classes = read_classes(out / "classes.txt")
    official = (synthetic_dataset / "splits" / "trainlist01.txt").read_bytes().decode().split("\r\n")[:-1]
    expected = [VideoRecord(p, int(label) - 1) for p, label in (line.split(" ") for line in official)]
    assert read_video_list(out / "train_split1.txt", num_classes=len(classes)) == expected
    test = read_video_list(out / "test_split1.txt", num_classes=len(classes))
    assert test and all(r.path.split("/")[0] == classes[r.label] for r in test)
    assert (out / "missing.txt").read_text() == ""
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "missing.txt", "test_split1.txt",
                                                      "train_split1.txt"]


# ------------------------------------------------------------------------------------- Mini-Kinetics

LABELS = ["passing American football (in game)", "massaging person's head", "riding a bike", "yoga"]


@pytest.fixture
def minikinetics(shared_data, tmp_path):
    ids_dir = shared_data / "mini_kinetics_200"
    train_ids = (ids_dir / "train_ytid_list.txt").read_text().split()
    val_ids = (ids_dir / "val_ytid_list.txt").read_text().split()
    dash_underscore = [i for i in train_ids if i.startswith("-") and "_" in i][:2]
    val_dash = [i for i in val_ids if i.startswith("-")][:1]
    picked_train = dash_underscore + [i for i in train_ids if not i.startswith("-")][:2]
    picked_val = val_dash + [i for i in val_ids if not i.startswith("-")][:1]
    csv_path = tmp_path / "kinetics_400_train.csv"
    rows = [  # label, youtube_id, time_start, time_end, split, is_cc
        (LABELS[0], picked_train[0], 10, 20, "train", 0),
        (LABELS[1], picked_train[1], 0, 10, "train", 1),
        (LABELS[2], picked_train[2], 95, 105, "train", 0),
        (LABELS[1], picked_train[3], 3, 13, "train", 0),      # its file is missing
        (LABELS[3], picked_val[0], 41, 51, "validate", 0),
        (LABELS[0], picked_val[1], 7, 17, "val", 0),
        ("bowling", "notInMiniK1", 1, 11, "train", 0),       # not in the id lists: ignored
    ]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows(rows)
    root = tmp_path / "clips"
    files = {  # class folders, flat, and a bare <id>.<ext> name
        f"{LABELS[0]}/{picked_train[0]}_000010_000020.mp4",
        f"{LABELS[1]}/{picked_train[1]}_000000_000010.mp4",
        f"{picked_train[2]}_000095_000105.mp4",
        f"val/{picked_val[0]}.webm",
        f"{LABELS[0]}/{picked_val[1]}_000007_000017.mkv",
    }
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return dict(csv=csv_path, train_ids=ids_dir / "train_ytid_list.txt", val_ids=ids_dir / "val_ytid_list.txt",
                root=root, train=picked_train, val=picked_val, n_train=len(train_ids), n_val=len(val_ids))


def test_minikinetics_join(minikinetics):
    mk = minikinetics
    lists = build_minikinetics_lists([mk["csv"]], mk["train_ids"], mk["val_ids"], mk["root"])
    classes = sorted(LABELS)
    assert lists.classes == classes
    t = mk["train"]
    assert sorted(lists.lists["train"], key=lambda r: r.path) == sorted([
        VideoRecord(f"{LABELS[0]}/{t[0]}_000010_000020.mp4", classes.index(LABELS[0])),
        VideoRecord(f"{LABELS[1]}/{t[1]}_000000_000010.mp4", classes.index(LABELS[1])),
        VideoRecord(f"{t[2]}_000095_000105.mp4", classes.index(LABELS[2])),
    ], key=lambda r: r.path)
    v = mk["val"]
    assert sorted(lists.lists["val"], key=lambda r: r.path) == sorted(
        [VideoRecord(f"val/{v[0]}.webm", classes.index(LABELS[3])),
         VideoRecord(f"{LABELS[0]}/{v[1]}_000007_000017.mkv", classes.index(LABELS[0]))], key=lambda r: r.path)
    assert lists.missing == [f"{t[3]}_000003_000013.mp4"]
    assert len(lists.unmatched) == (mk["n_train"] - 4) + (mk["n_val"] - 2)
    assert any(note.startswith("train: 80000 ids, 79996 not in the CSVs, 1 without a file, 3 listed")
               for note in lists.notes)
    assert any("4 classes found, Mini-Kinetics-200 has 200" in note for note in lists.notes)


def test_cli_minikinetics_writes_counts_and_reports(minikinetics, tmp_path):
    mk, out = minikinetics, tmp_path / "out"
    printed = run_tool("build_lists.py", "minikinetics", "--csv", str(mk["csv"]), "--train-ids", str(mk["train_ids"]),
                           "--val-ids", str(mk["val_ids"]), "--root", str(mk["root"]), "--out", str(out))
    assert "1 listed videos not found" in printed and "84994 ids not in the CSVs" in printed
    classes = read_classes(out / "classes.txt")
    assert classes == sorted(LABELS)
    assert len(read_video_list(out / "train.txt", len(classes))) == 3
    assert len(read_video_list(out / "val.txt", len(classes))) == 2
    assert (out / "missing.txt").read_text().splitlines() == [f"{mk['train'][3]}_000003_000013.mp4"]
    assert len((out / "unmatched_ids.txt").read_text().splitlines()) == 84994


def test_kinetics_csv_missing_column_is_named(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("label,youtube_id,time_start,split\nyoga,abc,1,train\n")
    with pytest.raises(ValueError, match=r"k\.csv: missing column\(s\) time_end; found label, youtube_id"):
        read_kinetics_csv([path])
    path.write_text('label,youtube_id,time_start,time_end,split\n"a, b",x,oops,3,train\n')
    with pytest.raises(ValueError, match=r"k\.csv:2: bad time_start"):
        read_kinetics_csv([path])


# ------------------------------------------------------------------------------------- class folders


def test_folder_lists_split_per_class(tmp_path):
    root = tmp_path / "videos"
    counts = {"b_class": 10, "a class": 5, "c": 1}
    for name, n in counts.items():
        for i in range(n):
            (root / name / "sub").mkdir(parents=True, exist_ok=True)
            (root / name / ("sub" if i % 2 else "") / f"clip {i}.MP4").touch()
    (root / "a class" / "notes.txt").touch()
    (root / "stray.mp4").touch()
    lists = build_folder_lists(root, val_fraction=0.2, seed=1)
    assert lists.classes == ["a class", "b_class", "c"]
    train, val = lists.lists["train"], lists.lists["val"]
    assert [sum(r.label == k for r in val) for k in range(3)] == [1, 2, 0]
    assert [sum(r.label == k for r in train) for k in range(3)] == [4, 8, 1]
    assert not {r.path for r in train} & {r.path for r in val}
    assert all(r.path.split("/")[0] == lists.classes[r.label] for r in train + val)
    assert any("1 videos directly under" in note for note in lists.notes)
    assert build_folder_lists(root, val_fraction=0.2, seed=1).lists == lists.lists
    assert list(build_folder_lists(root).lists) == ["train"]
    with pytest.raises(ValueError, match=r"val_fraction=1.0: must be in \[0, 1\)"):
        build_folder_lists(root, val_fraction=1.0)

"""Turn the datasets' own annotation files into our list files (``cgd_video.data.lists``).

* :func:`build_ucf101_lists`: the official ``ucfTrainTestlist`` (CRLF, 1-based labels, test lists without
  labels). The class of a video comes from its **folder** through ``classInd.txt``, never from the file
  name: some file names spell the class differently (``HandstandPushups/v_HandStandPushups_g08_c01.avi``).
* :func:`build_minikinetics_lists`: the Mini-Kinetics-200 id lists (Xie et al. 2018) joined with the
  Kinetics-400 annotation CSVs; clips are found anywhere under the root by file name.
* :func:`build_folder_lists`: one folder per class.

Every builder checks that each video exists under the root; missing videos are left out of the lists,
counted and named in :attr:`ListSet.missing` (``missing.txt``), never dropped silently.
:func:`write_list_set` writes ``<name>.txt`` per list, ``classes.txt`` and ``missing.txt``.
"""

from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from cgd_video.data.lists import VideoRecord, write_classes, write_video_list
from cgd_video.data.scan import VIDEO_EXTENSIONS, scan_folder
from cgd_video.utils.atomic import atomic_write_text

__all__ = [
    "ListSet",
    "VideoIndex",
    "build_ucf101_lists",
    "build_minikinetics_lists",
    "build_folder_lists",
    "write_list_set",
]

PathLike = Union[str, os.PathLike]


@dataclass
class ListSet:
    """What a builder produced.

    Attributes:
        classes: class names; label i is ``classes[i]``.
        lists: list name (file stem, e.g. ``"train_split1"``) -> records whose file exists.
        missing: relative paths that were expected under the root but not found (sorted, unique).
        unmatched: ids or entries that could not be joined with the annotations (Mini-Kinetics).
        notes: human-readable messages (skipped splits, counts); the CLI prints them.
    """

    classes: List[str]
    lists: Dict[str, List[VideoRecord]] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per list with its count, then the missing/unmatched counts."""
        lines = [f"{len(self.classes)} classes"]
        lines += [f"{name}: {len(records)} videos" for name, records in self.lists.items()]
        lines.append(f"missing files: {len(self.missing)}")
        if self.unmatched:
            lines.append(f"unmatched ids: {len(self.unmatched)}")
        return "\n".join(lines)


class VideoIndex:
    """Every video file under ``root``, indexed once by relative path and by stem (case-sensitive).

    ``find(rel)`` returns ``rel`` when it exists, otherwise the same path with another video extension
    (e.g. a dataset re-encoded from .avi to .mp4), otherwise ``None``.
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"video root {self.root} is not a folder")
        self.paths = [p.relative_to(self.root).as_posix() for p in scan_folder(self.root)]
        self._exact = set(self.paths)
        self._by_stem_path: Dict[str, str] = {}
        self.by_stem: Dict[str, str] = {}
        for rel in self.paths:
            self._by_stem_path.setdefault(os.path.splitext(rel)[0], rel)
            self.by_stem.setdefault(Path(rel).stem, rel)

    def find(self, rel: str) -> Optional[str]:
        if rel in self._exact:
            return rel
        return self._by_stem_path.get(os.path.splitext(rel)[0])

    def __len__(self) -> int:
        return len(self.paths)


def _split_lines(path: Path) -> List[Tuple[int, str]]:
    """(line number, text) of non-blank lines; CRLF and a UTF-8 BOM are handled."""
    with open(path, "r", encoding="utf-8-sig", newline=None) as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]


def read_ucf_class_index(path: PathLike) -> List[str]:
    """``classInd.txt`` (``<1-based index> <ClassName>``) -> class names in label order."""
    path = Path(path)
    names: Dict[int, str] = {}
    for number, text in _split_lines(path):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{number}: expected '<1-based index> <ClassName>', got {text!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"{path}: class indices must run 1..{len(names)} without gaps")
    return [names[i] for i in range(1, len(names) + 1)]


def _ucf_split(list_path: Path, class_to_label: Dict[str, int], with_labels: bool) -> List[VideoRecord]:
    records = []
    for number, text in _split_lines(list_path):
        parts = text.split(" ")
        rel = parts[0] if not with_labels else " ".join(parts[:-1])
        if (with_labels and len(parts) < 2) or "/" not in rel:
            form = "<ClassDir>/<file> <1-based label>" if with_labels else "<ClassDir>/<file>"
            raise ValueError(f"{list_path}:{number}: expected '{form}', got {text!r}")
        folder = rel.split("/", 1)[0]
        if folder not in class_to_label:
            raise ValueError(f"{list_path}:{number}: class folder {folder!r} is not in classInd.txt")
        label = class_to_label[folder]  # the folder decides, never the file name
        if with_labels and parts[-1] != str(label + 1):
            raise ValueError(f"{list_path}:{number}: label {parts[-1]} disagrees with folder {folder!r}, "
                             f"which classInd.txt numbers {label + 1}")
        records.append(VideoRecord(rel, label))
    return records


def _resolve(records: Iterable[VideoRecord], index: VideoIndex, missing: set) -> List[VideoRecord]:
    """Keep the records whose file exists (possibly under another video extension); collect the rest."""
    found = []
    for r in records:
        rel = index.find(r.path)
        if rel is None:
            missing.add(r.path)
        else:
            found.append(VideoRecord(rel, r.label))
    return found


def build_ucf101_lists(splits_dir: PathLike, root: PathLike, splits: Sequence[int] = (1, 2, 3)) -> ListSet:
    """Lists ``train_split{N}``/``test_split{N}`` from the official UCF-101 split files.

    Args:
        splits_dir: folder holding ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.
        root: folder holding ``<ClassDir>/<video>``; a listed ``.avi`` also matches a same-named ``.mp4``.
        splits: split numbers to build; one whose files are absent is skipped with a note.

    Raises:
        FileNotFoundError: no ``classInd.txt`` or no root folder.
        ValueError: malformed lines or unknown class folders, naming ``file:line``.
    """
    splits_dir = Path(splits_dir)
    class_ind = splits_dir / "classInd.txt"
    if not class_ind.is_file():
        raise FileNotFoundError(f"{class_ind} not found: --splits must be the ucfTrainTestlist folder")
    classes = read_ucf_class_index(class_ind)
    class_to_label = {name: i for i, name in enumerate(classes)}
    index = VideoIndex(root)
    result = ListSet(classes=classes)
    missing: set = set()
    for n in splits:
        train_file, test_file = splits_dir / f"trainlist0{n}.txt", splits_dir / f"testlist0{n}.txt"
        absent = [p.name for p in (train_file, test_file) if not p.is_file()]
        if absent:
            result.notes.append(f"split {n} skipped: {', '.join(absent)} not in {splits_dir}")
            continue
        train = _ucf_split(train_file, class_to_label, with_labels=True)
        test = _ucf_split(test_file, class_to_label, with_labels=False)
        overlap = {r.path for r in train} & {r.path for r in test}
        if overlap:
            raise ValueError(f"split {n}: {len(overlap)} videos are in both {train_file.name} and "
                             f"{test_file.name}, e.g. {sorted(overlap)[0]}")
        result.lists[f"train_split{n}"] = _resolve(train, index, missing)
        result.lists[f"test_split{n}"] = _resolve(test, index, missing)
        result.notes.append(f"split {n}: {len(train)} train + {len(test)} test listed")
    if not result.lists:
        raise FileNotFoundError(f"no trainlist0N.txt/testlist0N.txt pair found in {splits_dir}")
    result.missing = sorted(missing)
    if missing and not any(result.lists.values()):
        result.notes.append(f"warning: none of the listed videos is under {index.root}; --root must be the "
                            "folder holding the class folders (e.g. UCF-101/ApplyEyeMakeup/...)")
    return result


# ---------------------------------------------------------------------------------------- Mini-Kinetics

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_CLIP_STEM = re.compile(r"^(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


@dataclass(frozen=True)
class KineticsClip:
    label: str
    start: int
    end: int
    split: str


def read_kinetics_csv(paths: Sequence[PathLike]) -> Dict[str, KineticsClip]:
    """youtube_id -> clip from Kinetics-400 annotation CSVs (header-keyed; an extra ``is_cc`` column is fine).

    Raises:
        ValueError: a CSV lacks a required column (named, with the columns found) or has a bad time.
    """
    clips: Dict[str, KineticsClip] = {}
    for path in paths:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            lacking = [c for c in KINETICS_COLUMNS if c not in columns]
            if lacking:
                raise ValueError(f"{path}: missing column(s) {', '.join(lacking)}; found {', '.join(columns)}; "
                                 f"expected {', '.join(KINETICS_COLUMNS)} [, is_cc]")
            reader.fieldnames = columns
            for row in reader:
                try:
                    clip = KineticsClip(row["label"].strip(), int(float(row["time_start"])),
                                        int(float(row["time_end"])), row["split"].strip())
                except (TypeError, ValueError):
                    raise ValueError(f"{path}:{reader.line_num}: bad time_start/time_end in {row}") from None
                clips.setdefault(row["youtube_id"].strip(), clip)
    return clips


def _read_ids(path: PathLike) -> List[str]:
    return [text for _, text in _split_lines(Path(path))]


def build_minikinetics_lists(
    csv_paths: Sequence[PathLike], train_ids: PathLike, val_ids: PathLike, root: PathLike
) -> ListSet:
    """Lists ``train``/``val`` for Mini-Kinetics-200: id lists joined with the Kinetics-400 CSVs.

    Classes are the sorted label names of the joined ids (200 for the full CSVs). A clip is found under
    ``root`` (class folders or flat, any depth, any video extension) as ``<id>_<start:06d>_<end:06d>``,
    then ``<id>``, then any ``<id>_dddddd_dddddd``. Ids absent from the CSVs go to ``unmatched``; joined ids
    without a file go to ``missing`` (as ``<id>_<start>_<end>.mp4``). Neither stops the build.
    """
    clips = read_kinetics_csv(csv_paths)
    index = VideoIndex(root)
    by_id = dict(index.by_stem)
    for stem, rel in index.by_stem.items():
        m = _CLIP_STEM.match(stem)
        if m:
            by_id.setdefault(m.group("id"), rel)
    id_lists = {"train": _read_ids(train_ids), "val": _read_ids(val_ids)}
    joined = {name: [(i, clips[i]) for i in ids if i in clips] for name, ids in id_lists.items()}
    result = ListSet(classes=sorted({c.label for pairs in joined.values() for _, c in pairs}))
    label_of = {name: i for i, name in enumerate(result.classes)}
    missing = set()
    for name, ids in id_lists.items():
        unmatched = [i for i in ids if i not in clips]
        result.unmatched += [f"{name}\t{i}" for i in unmatched]
        records = []
        for youtube_id, clip in joined[name]:
            stem = f"{youtube_id}_{clip.start:06d}_{clip.end:06d}"
            rel = index.by_stem.get(stem) or by_id.get(youtube_id)
            if rel is None:
                missing.add(f"{stem}.mp4")
            else:
                records.append(VideoRecord(rel, label_of[clip.label]))
        result.lists[name] = records
        result.notes.append(f"{name}: {len(ids)} ids, {len(unmatched)} not in the CSVs, "
                            f"{len(joined[name]) - len(records)} without a file, {len(records)} listed")
    if len(result.classes) != 200:
        result.notes.append(f"warning: {len(result.classes)} classes found, Mini-Kinetics-200 has 200 "
                            "(are all Kinetics-400 CSVs given, train and validate?)")
    result.missing = sorted(missing)
    return result


# ---------------------------------------------------------------------------------------- class folders


def build_folder_lists(root: PathLike, val_fraction: float = 0.0, seed: int = 0) -> ListSet:
    """Lists from ``root/<Class>/**/<video>``: classes are the sorted folder names holding videos.

    With ``val_fraction > 0`` each class is split at random (``seed``) into ``train`` and ``val``, at least
    one video kept for training; otherwise everything goes to ``train``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be in [0, 1)")
    index = VideoIndex(root)
    per_class: Dict[str, List[str]] = {}
    loose = []
    for rel in index.paths:
        if "/" in rel:
            per_class.setdefault(rel.split("/", 1)[0], []).append(rel)
        else:
            loose.append(rel)
    if not per_class:
        raise ValueError(f"{root}: no class folders with videos ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    result = ListSet(classes=sorted(per_class))
    if loose:
        result.notes.append(f"{len(loose)} videos directly under {root} (not in a class folder) ignored")
    train, val = [], []
    rng = random.Random(seed)
    for label, name in enumerate(result.classes):
        videos = sorted(per_class[name])
        rng.shuffle(videos)
        n_val = min(int(round(len(videos) * val_fraction)), len(videos) - 1)
        val += [VideoRecord(v, label) for v in sorted(videos[:n_val])]
        train += [VideoRecord(v, label) for v in sorted(videos[n_val:])]
    result.lists["train"] = train
    if val_fraction > 0:
        result.lists["val"] = val
    return result


def write_list_set(out: PathLike, lists: ListSet) -> List[Path]:
    """Write ``<name>.txt`` per list, ``classes.txt``, ``missing.txt`` (may be empty) and, when there are
    any, ``unmatched_ids.txt`` into ``out``, atomically. Returns the written paths."""
    out = Path(out)
    written = [write_classes(out / "classes.txt", lists.classes)]
    written += [write_video_list(out / f"{name}.txt", records) for name, records in lists.lists.items()]
    written.append(atomic_write_text(out / "missing.txt", "".join(f"{p}\n" for p in lists.missing)))
    if lists.unmatched:
        written.append(atomic_write_text(out / "unmatched_ids.txt", "".join(f"{u}\n" for u in lists.unmatched)))
    return written

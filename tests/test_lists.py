"""List files: round trip, CRLF/blank lines, and errors that name file:line."""

from __future__ import annotations

import pytest

from cgd_video.data.lists import VideoRecord, read_classes, read_video_list, write_classes, write_video_list


def test_round_trip_keeps_paths_with_spaces(tmp_path):
    records = [VideoRecord("a/b c.mp4", 0), VideoRecord("ClassB/v 2 (x).avi", 3), VideoRecord("x.mkv", 1)]
    path = write_video_list(tmp_path / "l.txt", records)
    assert path.read_text() == "a/b c.mp4 0\nClassB/v 2 (x).avi 3\nx.mkv 1\n"
    assert read_video_list(path, num_classes=4) == records


def test_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes(b"\xef\xbb\xbfa.mp4 1\r\n\r\n   \r\nb/c d.mp4 0\r\n")
    assert read_video_list(path) == [VideoRecord("a.mp4", 1), VideoRecord("b/c d.mp4", 0)]


@pytest.mark.parametrize("bad_line, message", [
    ("only_a_path.mp4", "expected '<relative path> <0-based label>'"),
    ("clip.mp4 seven", "label 'seven' is not an integer"),
    ("clip.mp4 -1", "label -1 outside"),
    ("clip.mp4 4", r"label 4 outside \[0, 4\)"),
])
def test_bad_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "l.txt"
    path.write_text(f"ok.mp4 0\n\n{bad_line}\nok2.mp4 1\n")
    with pytest.raises(ValueError, match=message) as info:
        read_video_list(path, num_classes=4)
    assert f"{path}:3" in str(info.value)


def test_label_range_only_checked_when_num_classes_given(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("v.mp4 399\n")
    assert read_video_list(path) == [VideoRecord("v.mp4", 399)]


def test_classes_round_trip_and_duplicates(tmp_path):
    names = ["passing American football (in game)", "massaging person's head", "YoYo"]
    path = write_classes(tmp_path / "classes.txt", names)
    assert read_classes(path) == names
    path.write_text("A\nB\n\nA\n")
    with pytest.raises(ValueError, match=r"classes\.txt:4: class 'A' already named on line 1"):
        read_classes(path)


def test_unwritable_entries_are_refused(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        write_video_list(tmp_path / "l.txt", [VideoRecord("a\nb.mp4", 0)])
    with pytest.raises(ValueError, match="class name"):
        write_classes(tmp_path / "c.txt", ["ok", ""])
    assert not (tmp_path / "l.txt").exists()

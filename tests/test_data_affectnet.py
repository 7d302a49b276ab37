"""va2att.data.affectnet: CSV headers, label filtering with counted reasons, landmark parsing."""

import numpy as np
import pytest

from va2att.data.affectnet import (
    COLUMNS,
    LISTS_DIR,
    AffectNetError,
    parse_landmarks,
    read_split,
)

LM = ";".join(f"{i * 0.5:.2f}" for i in range(136))


def _write(root, lines, split="training"):
    d = root / LISTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{split}.csv").write_text("\n".join(lines) + "\n")


def _row(path="a/1.jpg", expr="1", v="0.5", a="-0.25", lm=LM):
    return f"{path},10,20,100,110,{lm},{expr},{v},{a}"


def test_landmark_parsing():
    pts, reason = parse_landmarks(LM)
    assert reason is None and pts.shape == (68, 2) and pts[1, 0] == 1.0 and pts[1, 1] == 1.5
    assert parse_landmarks(" " + LM.replace(";", "; ") + " ")[0] is not None
    assert parse_landmarks(";".join(LM.split(";")[:134])) == (None, "landmarks_wrong_length")
    bad = LM.split(";")
    bad[5] = "x1"
    assert parse_landmarks(";".join(bad)) == (None, "landmarks_non_numeric")
    assert parse_landmarks(LM.replace("0.00", "nan", 1)) == (None, "landmarks_non_numeric")
    assert parse_landmarks("") == (None, "landmarks_absent")
    assert parse_landmarks(float("nan")) == (None, "landmarks_absent")


def test_filters_and_counts(tmp_path):
    lines = [",".join(COLUMNS)] + [
        _row(),
        _row(path="a/2.jpg", expr="7", v=" 0.1 ", a="0.2"),
        _row(expr="8"),
        _row(expr="9", v="-2", a="-2"),
        _row(expr="0", v="-2"),
        _row(v="1.5"),
        _row(a="abc"),
        _row(a=""),
        _row(expr="x"),
        _row(path=""),
        _row(expr="1.0", v="-1", a="1"),
        "a/3.jpg,1,2,3,4,5,6,7,8,9,10,11",  # too many fields
    ]
    _write(tmp_path, lines)
    rows = read_split(tmp_path, "training")
    assert rows.paths == ["a/1.jpg", "a/2.jpg", "a/1.jpg", "a/1.jpg"]
    assert rows.expression.tolist() == [1, 7, 8, 1]  # code 8 ("None") is kept for its valence and arousal
    assert np.allclose(rows.valence, [0.5, 0.1, 0.5, -1]) and np.allclose(rows.arousal, [-0.25, 0.2, -0.25, 1])
    assert np.allclose(rows.boxes[0], [10, 20, 100, 110])
    assert dict(rows.dropped) == {
        "expression_excluded": 1,
        "no_value": 1,
        "label_out_of_range": 1,
        "label_non_numeric": 2,
        "expression_non_numeric": 1,
        "no_path": 1,
        "malformed_row": 1,
    }
    assert rows.total == len(lines) - 1
    seven = read_split(tmp_path, "training", num_classes=7)
    assert seven.expression.tolist() == [1, 8, 1] and seven.dropped["expression_excluded"] == 2


def test_no_header_and_header_variants(tmp_path):
    _write(tmp_path, [_row(), _row(expr="2")], "validation")
    assert len(read_split(tmp_path, "validation")) == 2
    header = "SubDirectory_FilePath, face_x,face_y,face_width,face_height,facial_landmarks,Expression,Valence,Arousal"
    _write(tmp_path, [header, _row()], "validation")
    assert read_split(tmp_path, "validation").paths == ["a/1.jpg"]


def test_missing_columns_are_named(tmp_path):
    _write(tmp_path, ["subDirectory_filePath,face_x,expression,valence", "a.jpg,1,1,0.5"])
    with pytest.raises(AffectNetError, match="face_y.*arousal"):
        read_split(tmp_path, "training")
    with pytest.raises(AffectNetError, match="validation.csv"):
        read_split(tmp_path, "validation")

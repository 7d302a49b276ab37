"""va2att.data.synthetic.affectnet: layout, determinism, labels consistent with the drawn face."""

import csv

import numpy as np

from va2att.data.affectnet import COLUMNS, IMAGES_DIR, LISTS_DIR
from va2att.data.synthetic import affectnet as synthetic
from va2att.data.synthetic.face import PROTOTYPES, expression_for


def _rows(root, split):
    with open(root / LISTS_DIR / f"{split}.csv") as f:
        return list(csv.reader(f))


def test_layout_labels_and_determinism(tmp_path):
    a = synthetic.generate(tmp_path / "a", train=12, val=6, seed=1, workers=1)
    b = synthetic.generate(tmp_path / "b", train=12, val=6, seed=1, workers=1)
    c = synthetic.generate(tmp_path / "c", train=12, val=6, seed=2, workers=1)
    for split, n in (("training", 12), ("validation", 6)):
        rows = _rows(a, split)
        assert tuple(rows[0]) == COLUMNS
        assert len(rows) == 1 + n + len(synthetic.DIRT)
        assert rows == _rows(b, split) and rows != _rows(c, split)
        for r in rows[1 : 1 + n]:
            v, ar, code = float(r[7]), float(r[8]), int(r[6])
            assert -1 <= v <= 1 and -1 <= ar <= 1 and code == expression_for(v, ar)
            assert len(r[5].split(";")) == 136 or int(r[0][-5]) in (3, 4)  # rows 3, 4 carry bad strings
            assert (a / IMAGES_DIR / r[0]).is_file()
        assert (a / IMAGES_DIR / rows[1][0]).read_bytes() == (b / IMAGES_DIR / rows[1][0]).read_bytes()
    assert len(PROTOTYPES) == 8


def test_landmarks_sit_on_the_drawn_features():
    import cv2

    from va2att.data.synthetic.face import draw_face

    rng = np.random.default_rng(0)
    for v, a in ((0.9, 0.9), (-0.9, -0.9)):
        img, lm, box = draw_face(v, a, rng)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
        eye = lm[36:42].mean(0)
        cheek = (lm[2] + lm[30]) / 2
        assert gray[int(eye[1]), int(eye[0])] < gray[int(cheek[1]), int(cheek[0])]  # dark iris vs skin
        x, y, w, h = box
        assert x <= lm[:, 0].min() and lm[:, 0].max() <= x + w and y <= lm[:, 1].min() and lm[:, 1].max() <= y + h


def test_mouth_curvature_follows_valence_and_opening_follows_arousal():
    from va2att.data.synthetic.face import face_landmarks

    def stats(v, a):
        lm = face_landmarks(v, a, np.random.default_rng(0))
        corners = lm[[48, 54], 1].mean()
        centre = lm[[51, 57], 1].mean()
        eye_open = lm[[40, 41], 1].mean() - lm[[37, 38], 1].mean()
        mouth_open = lm[66, 1] - lm[62, 1]
        return centre - corners, eye_open, mouth_open

    happy, sad = stats(0.9, 0.0), stats(-0.9, 0.0)
    calm, excited = stats(0.0, -0.9), stats(0.0, 0.9)
    assert happy[0] > 0.05 > -0.05 > sad[0]  # corners above / below the mouth centre
    assert excited[1] > 2 * calm[1] and excited[2] > calm[2] + 0.05


def test_the_portrait_drawing_writes_the_same_layout_with_its_own_faces(tmp_path):
    cartoon = synthetic.generate(tmp_path / "c", train=40, val=6, seed=1, workers=1)
    portrait = synthetic.generate(tmp_path / "p", train=40, val=6, seed=1, workers=1, style="portrait")
    rows = _rows(portrait, "training")
    assert tuple(rows[0]) == COLUMNS and len(rows) == 1 + 40 + len(synthetic.DIRT)
    usable = rows[1:41]
    for r in usable:
        v, ar, code = float(r[7]), float(r[8]), int(r[6])
        assert -1 <= v <= 1 and -1 <= ar <= 1 and code == expression_for(v, ar)
        assert (portrait / IMAGES_DIR / r[0]).is_file()
    assert _rows(cartoon, "training")[1][7:] != rows[1][7:]  # other labels, other faces
    assert (cartoon / IMAGES_DIR / rows[6][0]).read_bytes() != (portrait / IMAGES_DIR / rows[6][0]).read_bytes()


def test_portrait_labels_have_outliers_and_features_follow_the_shown_labels():
    from va2att.data.synthetic.portrait import (
        OUTLIER_SHARE,
        portrait_landmarks,
        sample_labels,
    )

    rng = np.random.default_rng(0)
    draws = [sample_labels(rng) for _ in range(2000)]
    outliers = np.mean([max(abs(v - lv), abs(a - la)) > 1e-5 for v, a, _, lv, la in draws])
    assert abs(outliers - OUTLIER_SHARE) < 0.015

    def stats(v, a):
        lm, _ = portrait_landmarks(v, a, np.random.default_rng(0))
        return lm[[51, 57], 1].mean() - lm[[48, 54], 1].mean(), lm[[40, 41], 1].mean() - lm[[37, 38], 1].mean()

    assert stats(0.9, 0.0)[0] > 0.05 > -0.05 > stats(-0.9, 0.0)[0]  # mouth corners up / down
    assert stats(0.0, 0.9)[1] > 2 * stats(0.0, -0.9)[1]  # eyes open with arousal

"""va2att.data.synthetic.components: the promised label noise, classes, crops and determinism."""

import csv

import numpy as np
import pytest

from va2att.data.affectnet import COLUMNS, IMAGES_DIR, LISTS_DIR
from va2att.data.synthetic import DEMOS, components
from va2att.data.synthetic import affectnet as synthetic
from va2att.data.synthetic.face import PROTOTYPES, expression_for

TRAIN, VAL = 600, 120


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("components")
    return synthetic.generate(base / "a", train=TRAIN, val=VAL, seed=3, workers=1, style="components")


def test_training_labels_carry_the_promised_noise_and_validation_is_clean(generated):
    noise = {r["subDirectory_filePath"]: r for r in _csv(generated / synthetic.NOISE_FILE)}
    assert len(noise) == TRAIN + VAL
    for split, n in (("training", TRAIN), ("validation", VAL)):
        rows = _csv(generated / LISTS_DIR / f"{split}.csv")[:n]  # the usable faces; the dirt rows follow
        assert all(r["subDirectory_filePath"] in noise for r in rows)
        kinds = {kind: 0 for kind in components.NOISE_KINDS}
        for r in rows:
            own = noise[r["subDirectory_filePath"]]
            assert own["split"] == split
            kinds[own["noise"]] += 1
            v, a = float(r["valence"]), float(r["arousal"])
            ov, oa = float(own["own_valence"]), float(own["own_arousal"])
            # The code is the face's own class, whatever its written values.
            assert int(r["expression"]) == expression_for(ov, oa)
            if own["noise"] == "clean":
                assert (v, a) == (ov, oa)
            elif own["noise"] == "swapped":
                assert (v, a) == (oa, ov)
            else:
                assert -1 <= v <= 1 and -1 <= a <= 1 and (v, a) != (ov, oa)
        if split == "validation":
            assert kinds == {"clean": VAL, "random": 0, "swapped": 0}
        else:
            share = (kinds["random"] + kinds["swapped"]) / n
            # A binomial share of 600 draws: 3 standard deviations either side.
            sd = np.sqrt(components.NOISE_SHARE * (1 - components.NOISE_SHARE) / n)
            assert abs(share - components.NOISE_SHARE) < 3 * sd
            assert kinds["random"] > 0.3 * share * n and kinds["swapped"] > 0.3 * share * n


def test_faces_sit_near_their_class_prototype_and_every_class_occurs():
    rng = np.random.default_rng(0)
    draws = [components.sample_labels(rng, training=False) for _ in range(4000)]
    codes = np.array([d[2] for d in draws])
    own = np.array([d[:2] for d in draws])
    assert set(codes) == set(range(len(PROTOTYPES)))
    distance = np.linalg.norm(own - PROTOTYPES[codes], axis=1)
    # The class says where the pair is: most faces lie within 0.3 of their prototype, far more than
    # the uniform share alone would put there.
    near = np.mean(distance < 0.3)
    assert near > components.PROTOTYPE_SHARE * 0.9
    assert np.median(distance) < 0.25


def test_each_class_but_neutral_has_its_own_mark():
    from va2att.data.synthetic.portrait import portrait_landmarks

    lm, prm = portrait_landmarks(0.0, 0.0, np.random.default_rng(0))
    marks = {code: components._strokes(code, lm, prm) for code in range(len(PROTOTYPES))}
    assert marks[0] == [] and all(marks[code] for code in range(1, len(PROTOTYPES)))
    shapes = {code: tuple(np.round(np.concatenate(m), 4).ravel()) for code, m in marks.items() if m}
    assert len(set(shapes.values())) == len(shapes)  # no two classes share a mark
    assert set(components.MARKS) == set(range(len(PROTOTYPES)))


def test_written_landmarks_frame_a_larger_shifted_region_than_the_face():
    from va2att.data.synthetic.portrait import portrait_landmarks

    rng = np.random.default_rng(1)
    lm, _ = portrait_landmarks(0.2, 0.1, rng)
    centre, size = lm.mean(0), np.ptp(lm, axis=0)
    scales, shifts = [], []
    for _ in range(400):
        written = components.frame(lm, rng)
        scale = np.ptp(written, axis=0) / size
        assert np.allclose(scale[0], scale[1])  # a similarity: the face keeps its shape
        scales.append(scale[0])
        shifts.append(np.abs(written.mean(0) - centre).max())
    lo, hi = components.CROP_SCALE
    assert lo <= min(scales) and max(scales) <= hi
    assert min(scales) < lo + 0.1 and max(scales) > hi - 0.1  # the whole range is used
    assert max(shifts) <= components.CROP_SHIFT and max(shifts) > 0.7 * components.CROP_SHIFT
    img, written, box = components.draw_components(0.2, 0.1, 1, rng)
    assert img.dtype == np.uint8 and img.ndim == 3 and written.shape == (68, 2) and box[2] == box[3] > 0


def test_generation_is_deterministic_by_seed(generated, tmp_path):
    again = synthetic.generate(tmp_path / "b", train=TRAIN, val=VAL, seed=3, workers=2, style="components")
    other = synthetic.generate(tmp_path / "c", train=40, val=8, seed=4, workers=1, style="components")
    for name in (f"{LISTS_DIR}/training.csv", f"{LISTS_DIR}/validation.csv", synthetic.NOISE_FILE):
        assert (generated / name).read_bytes() == (again / name).read_bytes()
    rows = _csv(generated / LISTS_DIR / "training.csv")
    assert list(rows[0]) == list(COLUMNS)
    for r in rows[5:600:97]:
        path = r["subDirectory_filePath"]
        assert (generated / IMAGES_DIR / path).read_bytes() == (again / IMAGES_DIR / path).read_bytes()
    assert _csv(other / synthetic.NOISE_FILE)[:8] != _csv(generated / synthetic.NOISE_FILE)[:8]


def test_it_is_a_named_set_of_the_affectnet_layout():
    assert DEMOS["demo-components"].layout == "AffectNet"
    assert "components" in synthetic.STYLES

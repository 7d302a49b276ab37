"""va2att.faces.align: template geometry, 68 -> 5 points, box fallback, MTCNN conventions."""

import numpy as np
import pytest

from va2att.config import FACE_SIZE
from va2att.faces.align import (
    BOX_CENTRE,
    TEMPLATE_5,
    align_any,
    align_box,
    align_detection,
    align_face,
    five_points_from_68,
    similarity_transform,
)
from va2att.faces.detection import Detection, FaceDetector
from va2att.faces.images import ImageError, RGBImage, from_array


def _blob_image(points, shape, sigma):
    """Gray image with bright Gaussian blobs at the two eye points (RGB)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for x, y in points[:2]:
        img += 250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return from_array(np.clip(img, 0, 255).astype(np.uint8), order="rgb")


def _centroid(face, half):
    """Intensity-weighted centroid of the blob in each half of the aligned face."""
    out = []
    for lo, hi in ((0, half), (half, face.shape[1])):
        part = face[:, lo:hi].astype(np.float64)
        w = np.clip(part - part.max() * 0.3, 0, None)
        yy, xx = np.mgrid[0 : part.shape[0], 0 : part.shape[1]]
        out.append(((xx * w).sum() / w.sum() + lo, (yy * w).sum() / w.sum()))
    return np.array(out)


@pytest.mark.parametrize("angle,scale", [(0, 4.0), (25, 3.0), (-40, 8.0), (170, 2.0), (12, 0.8)])
def test_eyes_land_on_template(angle, scale):
    rng = np.random.default_rng(angle + 100)
    t = np.deg2rad(angle)
    rot = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    pts = (TEMPLATE_5 - 28) @ rot.T + np.array([300.0, 260.0])
    pts[2:] += rng.normal(0, 0.5 * scale, (3, 2))  # nose and mouth off the template shape
    image = _blob_image(pts, (560, 620), sigma=1.2 * scale)
    face = align_face(image, pts)
    assert face.shape == (FACE_SIZE, FACE_SIZE) and face.dtype == np.uint8
    eyes = _centroid(face, FACE_SIZE // 2)
    m = similarity_transform(pts, TEMPLATE_5)
    expected = pts[:2] @ m[:, :2].T + m[:, 2]
    assert np.abs(eyes - expected).max() < 1.0
    assert np.abs(expected - TEMPLATE_5[:2]).max() < 1.0


def test_reduced_image_uses_original_coordinates():
    pts = (TEMPLATE_5 - 28) * 6 + np.array([400.0, 300.0])
    full = _blob_image(pts, (600, 800), sigma=7)
    import cv2

    half = RGBImage(cv2.resize(np.asarray(full.pixels), (400, 300), interpolation=cv2.INTER_AREA), 0.5, (600, 800))
    a, b = align_face(full, pts), align_face(half, pts)
    assert np.abs(_centroid(a, 28) - _centroid(b, 28)).max() < 0.5


def test_five_points_from_68():
    lm = np.zeros((68, 2))
    lm[36:42] = [10, 20]
    lm[36] = [4, 20]
    lm[42:48] = [40, 21]
    lm[30] = [25, 35]
    lm[48], lm[54] = [15, 50], [35, 50]
    p = five_points_from_68(lm.reshape(-1))
    assert np.allclose(p, [[9, 20], [40, 21], [25, 35], [15, 50], [35, 50]])
    with pytest.raises(ValueError):
        five_points_from_68(np.zeros(100))


def test_box_fallback_centres_the_box():
    pixels = np.zeros((300, 400), np.uint8)
    pixels[140:160, 190:210] = 255  # a bright square at the box centre (200, 150)
    image = from_array(pixels, order="rgb")
    face = align_box(image, (140, 90, 120, 120))
    ys, xs = np.nonzero(face > 128)
    assert abs(xs.mean() - BOX_CENTRE[0] + 0.5) < 1 and abs(ys.mean() - BOX_CENTRE[1] + 0.5) < 1


def test_alignment_refuses_plain_arrays():
    with pytest.raises(TypeError, match="RGBImage"):
        align_face(np.zeros((50, 50, 3), np.uint8), TEMPLATE_5)
    with pytest.raises(TypeError, match="RGBImage"):
        align_box(np.zeros((50, 50, 3), np.uint8), (0, 0, 10, 10))


def test_align_any_order_of_fallbacks():
    image = from_array(np.full((200, 200, 3), 90, np.uint8), order="rgb")
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = [80, 90], [120, 90], [100, 110], [85, 130], [115, 130]
    assert align_any(image, landmarks68=lm, box=(50, 50, 100, 100))[1] == "landmarks"
    assert align_any(image, landmarks68=np.zeros((68, 2)), box=(50, 50, 100, 100))[1] == "box"
    assert align_any(image, box=(50, 50, 100, 100))[1] == "box"
    with pytest.raises(ImageError) as error:
        align_any(image, box=(np.nan, 0, 5, 5))
    assert error.value.reason == "no_face"

    class Fake:
        def detect(self, img):
            return [Detection((50, 50, 100, 100), np.array([[80, 90], [120, 90], [100, 110], [85, 130], [115, 130.0]]), 0.99)]

    assert align_any(image, box=(np.nan,) * 4, detector=Fake())[1] == "mtcnn"


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return from_array(data.astronaut(), order="rgb")


def test_mtcnn_astronaut_one_face_level_eyes(astronaut):
    import cv2

    detector = FaceDetector()
    found = detector.detect(astronaut)
    assert len(found) == 1
    det = found[0]
    assert det.confidence > 0.95
    # Image-left eye first, as iBUG point 36 (subject's right eye).
    assert det.points5[0, 0] < det.points5[1, 0] and det.points5[3, 0] < det.points5[4, 0]
    x, y, w, h = det.box
    assert 150 < x + w / 2 < 290 and 50 < y + h / 2 < 200
    face = align_detection(astronaut, det)
    assert face.shape == (FACE_SIZE, FACE_SIZE)
    # Detect again on the aligned face (upscaled, padded): eyes level and on the template.
    k = 4
    big = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    pad = 64
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    again = detector.detect(from_array(big, order="rgb"))
    assert again, "MTCNN finds the aligned face again"
    eyes = (again[0].points5[:2] - pad) / k
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.5
    assert np.abs(eyes - TEMPLATE_5[:2]).max() < 2.5

    # Reduced detection: the same face in a 4x larger image, detected at max_side, reported in original coordinates.
    huge = from_array(cv2.resize(np.asarray(astronaut.pixels), (2048, 2048)), order="rgb")
    d2 = FaceDetector(max_side=512).detect(huge)[0]
    assert np.abs(d2.points5 / 4 - det.points5).max() < 6

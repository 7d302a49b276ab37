"""Face detection on real photos: compiled networks, the reduced detection copy, recall.

The photos are tests/face_photos.py's: the two scikit-image portraits, a 640×480 frame, a
group photo of eight pasted heads and the astronaut at face widths from 16 to 192 pixels, each with
its face boxes. "Whole picture" is `FaceDetector()`: MTCNN with its own settings on the picture
reduced to 1024 pixels, as prediction ran before the reduced copy.
"""

import face_photos
import numpy as np
import pytest

from va2att.faces.detection import (
    PREDICT_SCALE_FACTOR,
    PREDICT_SMALLEST_FACE,
    FaceDetector,
    box_iou,
    detection_scale,
)
from va2att.faces.images import from_array


@pytest.fixture(scope="module")
def whole():
    return FaceDetector()


@pytest.fixture(scope="module")
def reduced(whole):
    detector = FaceDetector(smallest_face=PREDICT_SMALLEST_FACE, scale_factor=PREDICT_SCALE_FACTOR)
    detector._mtcnn = whole.mtcnn  # same networks, built once
    return detector


@pytest.fixture(scope="module")
def photos():
    return {p.name: p for p in face_photos.recall_photos()}


def test_detection_scale():
    assert detection_scale(480, 640, max_side=1024, min_face_size=20) == 1.0  # never enlarged
    assert detection_scale(3000, 4000, max_side=1024, min_face_size=20) == pytest.approx(1024 / 4000)
    assert detection_scale(480, 640, max_side=1024, min_face_size=20, smallest_face=40) == pytest.approx(0.5)
    assert detection_scale(3000, 4000, max_side=1024, min_face_size=20, smallest_face=40) == pytest.approx(1024 / 4000)
    assert detection_scale(480, 640, max_side=1024, min_face_size=20, smallest_face=10) == 1.0
    with pytest.raises(ValueError, match="scale_factor"):
        FaceDetector(scale_factor=1.0)


def test_compiled_networks_give_the_package_detections(whole, photos):
    from mtcnn import MTCNN

    pixels = photos["astronaut"].pixels
    (eager,) = [f for f in MTCNN(device="CPU:0").detect_faces(pixels) if f["confidence"] >= 0.9]
    (compiled,) = whole.detect(from_array(pixels, order="rgb"))
    assert np.allclose(compiled.box, eager["box"], atol=0.5)
    assert compiled.confidence == pytest.approx(eager["confidence"], abs=1e-4)
    assert np.allclose(compiled.points5[0], eager["keypoints"]["left_eye"], atol=0.5)


def test_recall_is_that_of_the_whole_picture(whole, reduced, photos):
    counts = {}
    for name, photo in photos.items():
        image = from_array(photo.pixels, order="rgb")
        counts[name] = tuple(face_photos.match(photo.faces, [d.box for d in detector.detect(image)])[0]
                             for detector in (whole, reduced))
    assert counts["group 1280x800"][0] >= 5  # the group photo is a many-face photo for the whole-picture search
    assert {name: r for name, (w, r) in counts.items() if r < w} == {}, counts


def test_boxes_from_the_reduced_copy_land_on_the_faces(whole, reduced, photos):
    for name in ("astronaut", "frame 640x480", "group 1280x800"):
        image = from_array(photos[name].pixels, order="rgb")
        full, small = whole.detect(image), reduced.detect(image)
        assert len(small) == len(full) > 0
        for d in small:
            best = max(full, key=lambda f: box_iou(f.box, d.box))
            assert box_iou(best.box, d.box) > 0.7, (name, d.box, best.box)
            eye_distance = np.linalg.norm(best.points5[1] - best.points5[0])
            assert np.abs(d.points5 - best.points5).max() < 0.25 * eye_distance


def test_reduced_copy_of_a_reduced_decode_keeps_original_coordinates(whole, photos):
    import cv2

    photo = photos["frame 640x480"]
    half = cv2.resize(photo.pixels, (320, 240), interpolation=cv2.INTER_AREA)
    from va2att.faces.images import RGBImage

    decoded_half = RGBImage(half, scale=0.5, original_size=(480, 640))  # as read_image's reduced decode
    detector = FaceDetector(smallest_face=64, scale_factor=PREDICT_SCALE_FACTOR)
    detector._mtcnn = whole.mtcnn
    (face,) = detector.detect(decoded_half)
    assert box_iou(face.box, photo.faces[0]) > 0.5


def test_compiled_stages_give_the_eager_package_detections_on_every_photo(reduced, photos):
    eager = FaceDetector(smallest_face=PREDICT_SMALLEST_FACE, scale_factor=PREDICT_SCALE_FACTOR, compiled=False)
    for name, photo in photos.items():
        image = from_array(photo.pixels, order="rgb")
        ours, theirs = reduced.detect(image), eager.detect(image)
        assert len(ours) == len(theirs), name
        for a, b in zip(ours, theirs):
            assert np.allclose(a.box, b.box, atol=1e-3) and np.allclose(a.points5, b.points5, atol=1e-3), name
            assert a.confidence == pytest.approx(b.confidence, abs=1e-6), name


def test_every_stage_of_a_search_gets_one_tensor_of_the_picture(photos):
    import tensorflow as tf

    detector = FaceDetector(smallest_face=PREDICT_SMALLEST_FACE, scale_factor=PREDICT_SCALE_FACTOR)
    seen = []
    for shared in detector.mtcnn.stages:
        def spy(stage=shared.stage, **kwargs):
            seen.append(kwargs["images_normalized"])
            return stage(**kwargs)

        shared.stage = spy
    assert len(detector.detect(from_array(photos["frame 640x480"].pixels, order="rgb"))) == 1
    assert len(seen) == 3 and all(isinstance(t, tf.Tensor) and t is seen[0] for t in seen)
    detector.detect(from_array(photos["camera"].pixels, order="rgb"))
    assert len(seen) == 6 and seen[3] is not seen[0] and seen[3] is seen[5]  # a new picture, a new tensor


def test_pnet_searches_every_level_of_the_pyramid_in_one_compiled_call(photos):
    detector = FaceDetector(smallest_face=PREDICT_SMALLEST_FACE, scale_factor=PREDICT_SCALE_FACTOR)
    pnet = detector.mtcnn.stages[0].stage
    network, calls = pnet._model, []
    pnet._model = lambda *a, **k: calls.append(1) or network(*a, **k)
    image = from_array(photos["frame 640x480"].pixels, order="rgb")
    detector.detect(image)
    traced = len(calls)  # the network is called while the pyramid's function is traced: once a level
    assert traced >= 2 and list(pnet._pyramids) == [traced]
    assert len(detector.detect(image)) == 1 and len(calls) == traced  # then never from Python again


def test_given_proposals_are_made_square_about_their_centre():
    from va2att.faces.mtcnn_stages import GivenProposals

    rows = GivenProposals()(proposals=np.array([[10.0, 20.0, 30.0, 60.0]]))
    assert np.allclose(rows, [[0, 0, 20, 40, 60, 1]])  # 20 x 40 box -> 40 x 40, same centre (20, 40); confidence 1


def test_refining_a_box_near_a_face_finds_that_face_and_a_box_on_background_finds_none(reduced, photos):
    image = from_array(photos["frame 640x480"].pixels, order="rgb")
    (whole,) = reduced.detect(image)
    x, y, w, h = whole.box
    moved = (x + 0.15 * w, y - 0.1 * h, w, h)  # where a face that moved would be looked for
    for zoom in (1.0, 48 / w):
        (face,) = reduced.refine_pixels(image.pixels, [moved], zoom=zoom)
        assert box_iou(face.box, whole.box) > 0.8
        assert np.abs(face.points5 - whole.points5).max() < 0.1 * w
    # A region of the frame: results come back in the frame's coordinates.
    x0, y0 = int(x - w / 2), int(y - h / 2)
    region = image.pixels[y0:int(y + 1.5 * h), x0:int(x + 1.5 * w)]
    (face,) = reduced.refine_pixels(region, [moved], offset=(x0, y0))
    assert box_iou(face.box, whole.box) > 0.8
    assert reduced.refine_pixels(image.pixels, [(10, 10, w, h)]) == []  # background: not confirmed
    assert reduced.refine_pixels(image.pixels, []) == []

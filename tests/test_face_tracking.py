"""Following faces through video frames: region searches between whole-frame detections.

The clips are made of tests/face_photos.py's 640×480 frame (the astronaut, one face about 80
pixels wide), shifted, blanked or joined by a second face; the detector is the real MTCNN.
"""

import face_photos
import numpy as np
import pytest

from va2att.faces.detection import (
    PREDICT_SCALE_FACTOR,
    PREDICT_SMALLEST_FACE,
    FaceDetector,
    box_iou,
)
from va2att.faces.images import from_array
from va2att.faces.tracking import FaceTracker

FRAME = face_photos.frame_640x480()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(smallest_face=PREDICT_SMALLEST_FACE, scale_factor=PREDICT_SCALE_FACTOR)


def shifted(dx: int, dy: int = 0):
    """The frame moved right by dx and down by dy, and its face box."""
    moved = face_photos.shifted(FRAME, dx, dy)
    return from_array(moved.pixels, order="rgb"), moved.faces[0]


def blank():
    return from_array(np.full_like(FRAME.pixels, face_photos.BACKGROUND), order="rgb")


def test_a_moving_face_is_followed_in_its_region(detector):
    tracker = FaceTracker(detector, detect_every=10)
    for i in range(8):
        image, box = shifted(6 * i, 3 * i)
        (face,) = tracker.detect(image)
        assert box_iou(face.box, box) > 0.5, (i, face.box, box)
        (whole,) = detector.detect(image)
        assert box_iou(face.box, whole.box) > 0.7
    assert (tracker.full_detections, tracker.region_detections) == (1, 7)


def test_between_whole_frame_searches_only_onet_runs(detector):
    tracker = FaceTracker(detector, detect_every=10)
    searches, refinements = [], []
    search, refine = detector.mtcnn.detect_faces, detector.refiner.detect_faces
    detector.mtcnn.detect_faces = lambda *a, **k: searches.append(1) or search(*a, **k)
    detector.refiner.detect_faces = lambda *a, **k: refinements.append(len(k["proposals"])) or refine(*a, **k)
    try:
        for i in range(5):
            tracker.detect(shifted(8 * i, 4 * i)[0])
    finally:
        del detector.mtcnn.detect_faces, detector.refiner.detect_faces
    # One search of the first frame; then per frame one ONet call on two proposals (where the face was, and
    # where its motion puts it), no pyramid and no PNet or RNet.
    assert (len(searches), refinements) == (1, [2, 2, 2, 2])


def test_whole_frame_searched_once_every_k_frames(detector):
    tracker = FaceTracker(detector, detect_every=3)
    for i in range(7):
        tracker.detect(shifted(2 * i)[0])
    assert (tracker.full_detections, tracker.region_detections) == (3, 4)  # frames 0, 3 and 6
    every = FaceTracker(detector, detect_every=1)
    for i in range(3):
        every.detect(shifted(2 * i)[0])
    assert (every.full_detections, every.region_detections) == (3, 0)


def test_a_face_that_jumps_away_is_searched_for_in_the_whole_frame(detector):
    tracker = FaceTracker(detector, detect_every=10)
    tracker.detect(shifted(-150)[0])
    image, box = shifted(150)  # 300 pixels to the right: far outside the region around the last face
    (face,) = tracker.detect(image)
    assert box_iou(face.box, box) > 0.5
    assert tracker.full_detections == 2


def test_a_face_that_disappears_and_comes_back(detector):
    tracker = FaceTracker(detector, detect_every=10)
    assert len(tracker.detect(shifted(0)[0])) == 1
    assert tracker.detect(blank()) == []
    assert tracker.full_detections == 2  # the lost face sent the frame to the whole-frame search
    image, box = shifted(40)
    (face,) = tracker.detect(image)  # nothing to follow: whole frame at once
    assert box_iou(face.box, box) > 0.5 and tracker.full_detections == 3


def test_a_new_face_is_found_at_the_next_whole_frame_detection(detector):
    tracker = FaceTracker(detector, detect_every=3)
    one, _ = shifted(-150)
    two = np.array(one.pixels)
    right, _ = shifted(150)
    two[:, 320:] = right.pixels[:, 320:]
    counts = [len(tracker.detect(image)) for image in (one, from_array(two, order="rgb"),
                                                        from_array(two, order="rgb"), from_array(two, order="rgb"))]
    assert counts == [1, 1, 1, 2]  # frames 1 and 2 follow the first face; frame 3 searches the whole frame


def test_predictor_tracks_frames_of_one_video(tmp_path, detector):
    from conftest import TINY_MODEL

    from va2att.config import ModelConfig
    from va2att.model.network import build_model
    from va2att.prediction.predictor import Frame, Predictor

    path = tmp_path / "tiny.keras"
    build_model(ModelConfig(**TINY_MODEL)).save(path)
    predictor = Predictor(path, detector=detector, detect_every=4)
    frames = [Frame("clip.mp4", frame=i, image=shifted(5 * i)[0]) for i in range(6)]
    frames += [Frame("other.mp4", frame=0, image=shifted(0)[0])]
    results = predictor.predict_many(frames)
    assert [len(r.faces) for r in results] == [1] * 7
    for i, r in enumerate(results[:6]):
        assert box_iou(r.faces[0].box, shifted(5 * i)[1]) > 0.5
    # clip.mp4: whole frames 0 and 4, regions 1-3 and 5; other.mp4 starts with a whole frame.
    assert (predictor.tracker.full_detections, predictor.tracker.region_detections) == (3, 4)
    single = Predictor(path, detector=detector, detect_every=1)
    single.predict_many(frames)
    assert single.tracker.region_detections == 0
    with pytest.raises(ValueError, match="smallest_face"):
        Predictor(path, detector=detector, smallest_face=40)
    with pytest.raises(ValueError, match="detect_every"):
        Predictor(path, detect_every=0)


def test_a_face_not_found_keeps_its_track_open_for_a_while_then_a_new_face_gets_a_new_id(detector):
    tracker = FaceTracker(detector, detect_every=10, lost_frames=2)
    (first,) = tracker.track(shifted(0)[0])
    assert first.track == 1 and first.detection is not None
    assert [(t.track, t.detection) for t in tracker.track(blank())] == [(1, None)]  # missing, not renumbered
    (back,) = tracker.track(shifted(10)[0])
    assert back.track == 1 and box_iou(back.detection.box, shifted(10)[1]) > 0.5  # found again: same track
    assert [t.detection for t in tracker.track(blank())] == [None]
    assert [t.detection for t in tracker.track(blank())] == [None]
    assert tracker.track(blank()) == []  # three frames without the face: the track has ended
    (again,) = tracker.track(shifted(10)[0])
    assert again.track == 2  # a face that comes back after its track ended gets a new id
    tracker.reset()
    assert [t.track for t in tracker.track(shifted(0)[0])] == [1]  # a new video counts from 1


def test_two_faces_keep_their_tracks_while_they_swap_sides(detector):
    import face_video

    people = face_video.heads(56)
    tracker = FaceTracker(detector, detect_every=4)
    ids = []
    for index in range(0, 24, 2):
        frame, (astronaut, camera) = face_video.frame_at(index, (300, 480), people, 48)
        found = {t.track: t.detection.box for t in tracker.track(from_array(frame, order="rgb"))}
        assert len(found) == 2, index
        ids.append(tuple(max(found, key=lambda k: box_iou(found[k], box)) for box in (astronaut, camera)))
        assert min(box_iou(found[ids[-1][0]], astronaut), box_iou(found[ids[-1][1]], camera)) > 0.5
    assert set(ids) == {(1, 2)}  # the astronaut (top) is track 1 in every frame, the camera man track 2
    first, last = face_video.frame_at(0, (300, 480), people, 48)[1], face_video.frame_at(22, (300, 480), people, 48)[1]
    assert first[0][0] < first[1][0] and last[0][0] > last[1][0]  # they crossed: left to right they swapped


def test_association_pairs_each_track_with_the_nearest_face_moved_on_by_its_motion():
    from va2att.faces.tracking import associate, match_distance

    tracks = [(100.0, 100.0, 50.0, 50.0), (300.0, 100.0, 50.0, 50.0)]
    faces = [(310.0, 105.0, 52.0, 50.0), (90.0, 95.0, 48.0, 52.0), (600.0, 400.0, 50.0, 50.0)]
    assert sorted(associate(tracks, faces)) == [(0, 1), (1, 0)]  # the far face starts a track of its own
    assert match_distance((0.0, 0.0, 50.0, 50.0), (0.0, 0.0, 120.0, 120.0)) == float("inf")  # not the same size
    assert associate([(100.0, 100.0, 50.0, 50.0)], [(160.0, 100.0, 50.0, 50.0)]) == []  # more than a face away

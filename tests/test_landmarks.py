import numpy as np
import pytest

from lokitalk.errors import InputError
from lokitalk.prepare.landmarks import FaceBoxes, check_faces, fill_gaps, locate_faces, track_landmarks

pytest.importorskip("mediapipe")


def astronaut():
    from skimage import data

    return data.astronaut()


def test_fill_gaps_interpolates_short_gaps_and_flags_long_ones():
    n = 30
    truth = np.linspace(0, 29, n)[:, None, None] * np.ones((1, 478, 3))
    detected = np.ones(n, bool)
    detected[5:8] = False  # 3 frames: filled and trusted
    detected[15:25] = False  # 10 frames: filled, not trusted
    detected[0] = False  # an end: copied, not trusted
    points = np.where(detected[:, None, None], truth, np.nan)
    filled, valid = fill_gaps(points, detected, max_gap=4)
    np.testing.assert_allclose(filled[5:8], truth[5:8])
    np.testing.assert_allclose(filled[15:25], truth[15:25])
    assert valid[5:8].all() and not valid[15:25].any() and not valid[0]
    assert np.isfinite(filled).all()


def test_one_real_face_is_located_and_tracked():
    image = astronaut()
    boxes = locate_faces([(0, image), (1, image)])
    assert np.isfinite(boxes.boxes).all() and not boxes.competing.any()
    check_faces(boxes, "astronaut")  # no error
    x0, y0, x1, y1 = boxes.boxes[0]
    assert 150 < (x0 + x1) / 2 < 300 and 60 < (y0 + y1) / 2 < 200  # her face, not elsewhere
    points, detected = track_landmarks([image] * 3)
    assert detected.all() and points.shape == (3, 478, 3)
    from lokitalk.face_model import load_face_template

    uv = load_face_template().portrait_uv
    assert np.median(np.linalg.norm(points[0, :, :2] - uv, axis=1)) < 3.0  # template built from it


def test_two_faces_of_similar_size_compete():
    image = astronaut()
    pair = np.concatenate([image[:, 60:380], image[:, 60:380]], axis=1)
    boxes = locate_faces([(i, pair) for i in range(4)])
    assert boxes.competing.all()
    with pytest.raises(InputError, match="two faces"):
        check_faces(boxes, "pair.mp4")


def test_no_face_is_an_error():
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    boxes = locate_faces([(i, noise) for i in range(4)])
    with pytest.raises(InputError, match="no face"):
        check_faces(boxes, "noise.mp4")


def test_a_face_in_few_frames_is_not_enough():
    boxes = FaceBoxes(np.arange(10), np.full((10, 4), np.nan), np.zeros(10, bool))
    boxes.boxes[:3] = [10, 10, 50, 50]
    with pytest.raises(InputError, match="no face found in 70%"):
        check_faces(boxes, "clip.mp4")

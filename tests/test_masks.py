"""Region labels: synthetic faces with known geometry, symmetries, and one real photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lokitalk.errors import InputError
from lokitalk.face_model import load_face_template, polygon_area
from lokitalk.prepare.masks import (
    REGION_COLORS,
    Region,
    head_mask,
    lower_face_mask,
    region_labels,
    region_labels_batch,
    region_mask,
)

T = load_face_template()
SIZE = 256
# the template seen head-on: 600 px per metre, face ~83 px wide, forehead y~53, chin y~148
SCALE, CX, CY = 600.0, 128.0, 100.0


def frontal_landmarks(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    v = T.vertices.astype(np.float64)
    return np.stack([CX + dx + SCALE * v[:, 0], CY + dy + SCALE * v[:, 1]], axis=1)


def synthetic_person(dx: int = 0, dy: int = 0, size: int = SIZE) -> np.ndarray:
    """An ellipse head, a neck and a trapezoid torso, as uint8 probability * 255."""
    prob = np.zeros((size, size), np.uint8)
    cv2.ellipse(prob, (128 + dx, 95 + dy), (60, 70), 0, 0, 360, 255, -1)
    cv2.rectangle(prob, (105 + dx, 140 + dy), (151 + dx, 185 + dy), 255, -1)
    torso = np.array([[60, 180], [196, 180], [236, 300], [20, 300]]) + [dx, dy]
    cv2.fillPoly(prob, [torso.astype(np.int32)], 255)
    return prob


def label_at(labels: np.ndarray, xy) -> Region:
    x, y = np.round(np.asarray(xy, np.float64)).astype(int)
    return Region(int(labels[y, x]))


@pytest.fixture(scope="module")
def frontal() -> tuple[np.ndarray, np.ndarray]:
    lms = frontal_landmarks()
    return lms, region_labels(synthetic_person(), lms, T)


def test_face_parts(frontal):
    lms, labels = frontal
    assert labels.dtype == np.uint8 and labels.shape == (SIZE, SIZE)
    assert label_at(labels, lms[T.lips_outer].mean(0)) == Region.MOUTH
    assert label_at(labels, lms[T.left_eye].mean(0)) == Region.EYES
    assert label_at(labels, lms[T.right_eye].mean(0)) == Region.EYES
    # cheek: halfway between an eye's centre and the mouth corner below it
    lips = lms[T.lips_outer]
    corner = lips[np.argmin(lips[:, 0])]
    cheek = 0.5 * (lms[T.right_eye].mean(0) + corner) + [-6, 0]
    assert label_at(labels, cheek) == Region.FACE
    # eyebrows and nose are face skin
    assert label_at(labels, lms[T.left_eyebrow].mean(0)) == Region.FACE
    assert label_at(labels, lms[1]) == Region.FACE  # nose tip


def test_mouth_and_eyes_fill_their_polygons(frontal):
    lms, labels = frontal
    for loop, region in ((T.lips_outer, Region.MOUTH), (T.left_eye, Region.EYES), (T.right_eye, Region.EYES)):
        inside = _poly_mask(lms[loop])
        area = float(polygon_area(lms[loop]))
        assert np.mean(labels[inside] == region) > 0.9
        assert 0.8 * area < np.sum(inside & (labels == region)) < 1.3 * area + 20


def _poly_mask(points: np.ndarray) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(m, [np.round(points).astype(np.int32)], 1)
    return m.astype(bool)


def test_head_neck_torso_background(frontal):
    lms, labels = frontal
    forehead = lms[T.face_oval][np.argmin(T.vertices[T.face_oval, 1])]
    chin = lms[T.face_oval][np.argmax(T.vertices[T.face_oval, 1])]
    assert label_at(labels, forehead - [0, 15]) == Region.HEAD  # hair above the forehead
    assert label_at(labels, (75, 95)) == Region.HEAD  # ear level, beside the face oval
    assert label_at(labels, chin + [0, 15]) == Region.NECK  # under the chin, centred
    assert label_at(labels, (60, 230)) == Region.TORSO  # shoulder
    assert label_at(labels, (128, 250)) == Region.TORSO  # chest: deeper than the neck band
    for corner in [(0, 0), (SIZE - 1, 0), (0, 120), (SIZE - 1, 120)]:
        assert label_at(labels, corner) == Region.BACKGROUND
    # every class is there and background is where the person is not
    assert set(np.unique(labels)) == set(int(r) for r in Region)
    person = synthetic_person() >= 128
    face = region_mask(labels, Region.FACE, Region.MOUTH, Region.EYES)
    assert not (labels[~person & ~face] != Region.BACKGROUND).any()
    assert (labels[person] != Region.BACKGROUND).all()


def test_everything_person_follows_the_geometry():
    """With the whole frame 'person' the labels show the zones themselves."""
    lms = frontal_landmarks()
    labels = region_labels(np.full((SIZE, SIZE), 255, np.uint8), lms, T)
    jaw_y = CY + SCALE * 0.0247  # mouth-corner level of the template
    assert label_at(labels, (60, jaw_y - 4)) == Region.HEAD  # beside the face, above the jaw level
    assert label_at(labels, (60, jaw_y + 4)) == Region.TORSO  # same, just below it
    assert label_at(labels, (60, 0)) == Region.HEAD  # the head zone runs up off the image
    assert label_at(labels, (10, 60)) == Region.TORSO  # too far out to the side for a head
    assert label_at(labels, (128 - 35, 170)) == Region.NECK
    assert label_at(labels, (128 - 55, 170)) == Region.TORSO  # outside the neck band


def test_face_polygons_are_foreground_without_segmentation():
    lms = frontal_landmarks()
    labels = region_labels(np.zeros((SIZE, SIZE), np.uint8), lms, T)
    assert label_at(labels, lms[T.lips_outer].mean(0)) == Region.MOUTH
    assert label_at(labels, lms[T.left_eye].mean(0)) == Region.EYES
    assert label_at(labels, lms[1]) == Region.FACE
    face = region_mask(labels, Region.FACE, Region.MOUTH, Region.EYES)
    assert not region_mask(labels, Region.HEAD, Region.NECK, Region.TORSO).any()
    assert abs(face.sum() - float(polygon_area(lms[T.face_oval]))) < 0.1 * face.sum()


def test_translation_equivariance(frontal):
    _, labels = frontal
    dx, dy = 9, -6
    moved = region_labels(synthetic_person(dx, dy), frontal_landmarks(dx, dy), T)
    # compare where neither copy touches the image border
    a = labels[20:230, 20:230]
    b = moved[20 + dy : 230 + dy, 20 + dx : 230 + dx]
    assert np.array_equal(a, b)


def test_rotation_equivariance_follows_head_roll():
    """Rotate the whole frame by 90 degrees: the labels rotate with it (down follows the face)."""
    lms = frontal_landmarks()
    prob = synthetic_person()
    labels = region_labels(prob, lms, T)
    # np.rot90 (counter-clockwise) sends pixel (x, y) to (y, W-1-x)
    rot_lms = np.stack([lms[:, 1], SIZE - 1 - lms[:, 0]], axis=1)
    rot = region_labels(np.ascontiguousarray(np.rot90(prob)), rot_lms, T)
    agree = np.mean(np.rot90(labels) == rot)
    assert agree > 0.995
    assert label_at(rot, (CY + 60, SIZE - 1 - CX)) == Region.NECK  # "under" the chin is now +x


def test_turned_head_keeps_the_nose_and_moves_the_neck_back():
    """A head turned 70 degrees: the nose sticks out of the face oval but is still FACE, and
    the neck band sits under the middle of the head rather than under the chin."""
    a = np.deg2rad(70)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    v = T.vertices.astype(np.float64) @ R.T
    lms = np.stack([CX + SCALE * v[:, 0], CY + SCALE * v[:, 1]], axis=1)
    labels = region_labels(np.full((SIZE, SIZE), 255, np.uint8), lms, T)
    assert not _poly_mask(lms[T.face_oval])[int(lms[1, 1]), int(lms[1, 0])]  # out of the oval
    assert label_at(labels, lms[1]) == Region.FACE
    chin = lms[T.face_oval][np.argmax(T.vertices[T.face_oval, 1])]
    neck_x = np.flatnonzero(labels[int(chin[1]) + 20] == Region.NECK)
    centre = 0.5 * (neck_x.min() + neck_x.max())
    assert centre > chin[0] + 10  # the face turned to -x: the chin is in front of the neck
    assert abs(centre - CX) < 15  # the neck is under the head's centre


def test_batch_matches_single_frames(frontal):
    lms, labels = frontal
    prob = np.stack([synthetic_person(), synthetic_person(5, 3)])
    all_lms = np.stack([lms, frontal_landmarks(5, 3)])
    batch = region_labels_batch(prob, all_lms, T)
    assert batch.shape == (2, SIZE, SIZE) and batch.dtype == np.uint8
    assert np.array_equal(batch[0], labels)
    assert np.array_equal(batch[1], region_labels(prob[1], all_lms[1], T))


def test_region_mask_and_head_mask():
    labels = np.arange(7, dtype=np.uint8).reshape(1, 7)
    assert region_mask(labels, Region.NECK, Region.TORSO).tolist() == [[0, 1, 1, 0, 0, 0, 0]]
    assert region_mask(labels).sum() == 0
    assert head_mask(labels).tolist() == [[0, 0, 0, 1, 1, 1, 1]]
    assert set(REGION_COLORS) == set(Region)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        region_labels(np.zeros((8, 8, 3), np.uint8), frontal_landmarks(), T)
    with pytest.raises(ValueError):
        region_labels(np.zeros((8, 8), np.uint8), frontal_landmarks()[:68], T)
    with pytest.raises(ValueError):
        region_labels(np.zeros((8, 8), np.uint8), np.full((478, 2), np.nan), T)
    with pytest.raises(ValueError):  # all landmarks on one point: no orientation
        region_labels(np.zeros((8, 8), np.uint8), np.zeros((478, 2)), T)


# ----------------------------------------------------------------------------- real photo


@pytest.fixture(scope="module")
def astronaut():
    pytest.importorskip("mediapipe")
    from skimage import data

    from lokitalk.prepare.segmentation import segment_person

    image = data.astronaut()
    prob = segment_person([image])
    return image, prob


def test_segment_person_output(astronaut):
    image, prob = astronaut
    assert prob.shape == (1, *image.shape[:2]) and prob.dtype == np.uint8
    person = prob[0] >= 128
    assert 0.35 < person.mean() < 0.75  # she and her helmet fill about half the photo
    assert person[120, 225] and person[400, 200]  # face, spacesuit
    assert not person[100, 20] and not person[40, 460]  # flag, wall


def test_segment_person_refuses_bad_input():
    pytest.importorskip("mediapipe")
    from lokitalk.prepare.segmentation import segment_person

    with pytest.raises(InputError):
        segment_person([])
    with pytest.raises(ValueError):
        segment_person([np.zeros((32, 32), np.uint8)])


def test_astronaut_labels(astronaut):
    image, prob = astronaut
    uv = T.portrait_uv.astype(np.float64)
    labels = region_labels(prob[0], uv, T)
    frac = {r: float((labels == r).mean()) for r in Region}
    assert 0.3 < frac[Region.BACKGROUND] < 0.65
    assert 0.25 < frac[Region.TORSO] < 0.6
    assert 0.01 < frac[Region.HEAD] < 0.08
    assert 0.005 < frac[Region.NECK] < 0.05
    assert 0.015 < frac[Region.FACE] < 0.05
    # the hair just above the face oval is HEAD: a strip 4-16 px above its top, +-20 px wide
    top = uv[T.face_oval][np.argmin(T.vertices[T.face_oval, 1])]
    x0, y0 = int(top[0]), int(top[1])
    strip = labels[y0 - 16 : y0 - 4, x0 - 20 : x0 + 20]
    assert np.mean(strip == Region.HEAD) > 0.95
    chin = uv[T.face_oval][np.argmax(T.vertices[T.face_oval, 1])]
    assert label_at(labels, chin + [0, 20]) == Region.NECK  # her black collar
    assert label_at(labels, (100, 400)) == Region.TORSO  # spacesuit
    assert label_at(labels, (20, 100)) == Region.BACKGROUND  # flag


def test_the_eye_region_stays_open_through_a_blink(frontal):
    from lokitalk.prepare.masks import _fit_head_frame, open_eye_contour

    lms, labels = frontal
    frame = _fit_head_frame(lms, T)
    for loop in (T.left_eye, T.right_eye):
        # landmarks that are the template itself: the open contour is the real one grown by 10 %
        real = lms[loop]
        centre = real.mean(0)
        np.testing.assert_allclose(open_eye_contour(lms, loop, frame, T), centre + 1.1 * (real - centre), atol=1e-6)
    closed = lms.copy()
    for loop in (T.left_eye, T.right_eye):  # a blink: every eye point on the line between the corners
        xs = closed[loop, 0]
        a, b = closed[loop][np.argmin(xs)], closed[loop][np.argmax(xs)]
        t = (xs - a[0]) / (b[0] - a[0])
        closed[loop] = a + t[:, None] * (b - a)
    blink = region_labels(synthetic_person(), closed, T)
    for loop in (T.left_eye, T.right_eye):
        inside = _poly_mask(lms[loop])  # where the open eye was
        assert np.mean(blink[inside] == Region.EYES) > 0.95
        assert abs(np.sum(blink == Region.EYES) - np.sum(labels == Region.EYES)) <= 2  # same region


def test_lower_face_holds_what_moves_with_speech_and_follows_the_face(frontal):
    lms, labels = frontal
    mask = lower_face_mask((SIZE, SIZE), lms, T)
    inside = lambda xy: bool(mask[tuple(np.round(np.asarray(xy)[::-1]).astype(int))])  # noqa: E731
    assert all(inside(p) for p in lms[T.mouth_points])  # the lips
    chin = lms[152]
    face_height = np.ptp(lms[T.face_oval], axis=0).max()
    assert inside(chin) and inside(chin + [0, 0.04 * face_height])  # the chin and where it drops to
    assert not inside(chin + [0, 0.12 * face_height])  # not the whole neck
    assert not inside(lms[T.left_eye].mean(0)) and not inside(lms[T.right_eye].mean(0))
    assert not inside(lms[10])  # the forehead
    assert not mask[(labels == Region.EYES)].any()
    # it moves with the face, and a frame without landmarks has none
    moved = lower_face_mask((SIZE, SIZE), frontal_landmarks(dx=7, dy=-5), T)
    assert np.array_equal(moved[20:-20, 20:-20], np.roll(mask, (-5, 7), (0, 1))[20:-20, 20:-20])
    assert not lower_face_mask((SIZE, SIZE), np.full_like(lms, np.nan), T).any()
    # the margin only adds
    bare = lower_face_mask((SIZE, SIZE), lms, T, chin_margin=0.0)
    assert (bare <= mask).all() and mask.sum() > bare.sum()

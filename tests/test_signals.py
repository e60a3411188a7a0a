import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lokitalk.face_model import load_face_template
from lokitalk.prepare.signals import (LipBasis, align_to_head_frame, align_to_head_frame_reference,
                                      detect_blinks, eye_ratio, fit_lip_basis, mouth_opening, rebase_lip_basis)


def posed(points_head, yaw_deg, scale, shift):
    """Put head-frame points into a 'mediapipe-like' frame: rotated, scaled, shifted."""
    rot = Rotation.from_euler("yxz", [yaw_deg, 5, -4], degrees=True).as_matrix()
    return scale * points_head @ rot.T + shift


def test_vectorised_alignment_matches_reference(rng):
    template = load_face_template()
    frames = np.stack([posed(template.vertices + rng.normal(0, 1e-3, (478, 3)), y, 900, [128, 120, 5])
                       for y in (-30, 0, 25)])
    np.testing.assert_allclose(align_to_head_frame(frames, template),
                               align_to_head_frame_reference(frames, template), atol=1e-9)


def test_signals_do_not_change_when_the_head_turns_or_moves():
    template = load_face_template()
    head = template.vertices.astype(float).copy()
    head[template.lips_inner[len(template.lips_inner) // 2:], 1] += 0.006  # an open mouth
    views = np.stack([posed(head, yaw, scale, shift) for yaw, scale, shift in
                      [(0, 1000, [0, 0, 0]), (30, 700, [50, 20, 3]), (-20, 1400, [-30, 60, -2])]])
    aligned = align_to_head_frame(views, template)
    eyes, mouth = eye_ratio(aligned, template), mouth_opening(aligned, template)
    np.testing.assert_allclose(eyes, eyes[:1].repeat(3, 0), rtol=1e-6)
    np.testing.assert_allclose(mouth, mouth[0], rtol=1e-6)
    assert mouth[0] > 0.002  # millimetres of opening are measured, in metres


def test_eye_ratio_falls_as_the_upper_lid_closes():
    template = load_face_template()
    loop = template.left_eye
    pts = template.vertices[loop]
    centre_y = pts[:, 1].mean()
    ratios = []
    for closure in (0.0, 0.5, 0.9):
        head = template.vertices.astype(float).copy()
        upper = loop[pts[:, 1] < centre_y]
        head[upper, 1] += closure * (centre_y - head[upper, 1]) * 2 * 0.5
        ratios.append(eye_ratio(head[None], template)[0, 0])
    assert ratios[0] > ratios[1] > ratios[2]
    right = eye_ratio(template.vertices[None].astype(float), template)[0, 1]
    assert right == pytest.approx(ratios[0], rel=0.05)  # the template is symmetric


def test_blink_detection_precision_and_recall_on_a_synthetic_trace(rng):
    fps = 25.0
    n = 750
    ratio = 0.25 + 0.01 * rng.standard_normal(n) + 0.02 * np.sin(np.arange(n) / 90)
    truth = [(40, 44), (160, 163), (300, 305), (301 + 150, 455), (620, 623)]
    for a, b in truth:
        ratio[a:b + 1] = 0.05
    ratio[500:540] = 0.06  # eyes shut for 1.6 s: not a blink
    found = detect_blinks(ratio, fps)
    hits = sum(any(a <= fb and fa <= b for fa, fb in found) for a, b in truth)
    assert hits == len(truth)
    assert len(found) == len(truth)


def test_lip_basis_round_trip_and_sharing(rng):
    template = load_face_template()
    m = len(template.mouth_points)
    neutral = template.vertices[template.mouth_points].astype(float)
    modes = rng.standard_normal((3, m, 3)) * 1e-3
    weights = rng.standard_normal((200, 3))
    mouths = neutral + np.einsum("nk,kmc->nmc", weights, modes)
    basis = fit_lip_basis(mouths, template, components=16)
    feature = basis.encode(mouths)
    np.testing.assert_allclose(basis.decode(feature), mouths, atol=1e-9)
    # 3 modes of motion plus the offset of the average mouth from the rest mouth: 4 directions
    assert np.all(np.abs(feature[:, 4:]) < 1e-9)
    restored = LipBasis.from_arrays(basis.to_arrays())
    np.testing.assert_array_equal(restored.components, basis.components)
    # another identity with a different resting mouth reuses the basis with its own neutral
    other = mouths[:50] + 0.004
    rebased = rebase_lip_basis(basis, other)
    assert np.abs(rebased.encode(other).mean(0)).max() < np.abs(basis.encode(other).mean(0)).max()

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lokitalk.face_model import load_face_template
from lokitalk.prepare.pose import (PoseConfig, euler_from_rotation, fit_head_pose, fit_pose_single_reference,
                                   initial_poses, project, smooth_poses, solve_poses)


def synthetic_sequence(n=120, focal=420.0, size=256, noise=0.5, seed=0):
    """Template landmarks projected with a known focal and a head that turns +-25 deg."""
    template = load_face_template()
    t = np.linspace(0, 1, n)
    euler = np.stack([25 * np.sin(2 * np.pi * t * 1.3), 12 * np.cos(2 * np.pi * t * 0.7), 6 * np.sin(2 * np.pi * t)], 1)
    rotation = Rotation.from_euler("yxz", euler, degrees=True).as_matrix()
    translation = np.stack([0.01 * np.sin(5 * t), 0.005 + 0 * t, 0.55 + 0.03 * np.sin(3 * t)], 1)
    points = project(template.vertices.astype(float), rotation, translation, focal, size / 2, size / 2)
    points += np.random.default_rng(seed).normal(0, noise, points.shape)
    return template, points, rotation, translation


def angle_error_deg(a, b):
    return np.degrees(Rotation.from_matrix(np.einsum("nji,njk->nik", a, b)).magnitude())


def test_pose_fit_recovers_rotation_within_1deg_and_focal_within_5pct():
    template, points, rotation, translation = synthetic_sequence()
    fit = fit_head_pose(points, template.vertices, template.rigid, 256, 256)
    assert fit.focal_source == "fitted" and abs(fit.focal_px - 420.0) / 420.0 < 0.05
    assert angle_error_deg(rotation, fit.rotation).max() < 1.0
    assert np.abs(fit.translation[:, 2] / translation[:, 2] - 1).max() < 0.06
    assert fit.reprojection_error_px < 1.0  # 0.5 px noise per coordinate


def test_focal_is_found_for_a_long_and_a_short_lens():
    for focal in (300.0, 900.0):
        template, points, _, _ = synthetic_sequence(focal=focal, noise=0.3)
        fit = fit_head_pose(points, template.vertices, template.rigid, 256, 256)
        assert abs(fit.focal_px - focal) / focal < 0.05, (focal, fit.focal_px)


def test_batched_solver_matches_scipy_reference_per_frame():
    template, points, rotation, translation = synthetic_sequence(n=6, noise=0.8, seed=3)
    shape = template.vertices[template.rigid].astype(float)
    observed = points[:, template.rigid]
    rot0, trans0 = initial_poses(shape, observed, 420.0, 128, 128)
    rot, trans, _ = solve_poses(shape, observed, 420.0, 128, 128, rot0, trans0, iters=30, huber_px=1e6)
    for n in range(6):
        ref_rot, ref_trans = fit_pose_single_reference(shape, observed[n], 420.0, 128, 128,
                                                       Rotation.from_matrix(rot0[n]).as_rotvec(), trans0[n])
        assert angle_error_deg(ref_rot[None], rot[n:n + 1])[0] < 0.02
        np.testing.assert_allclose(trans[n], ref_trans, atol=2e-4)


def test_initial_pose_is_close_enough_to_converge_from():
    template, points, rotation, _ = synthetic_sequence(n=30, noise=0.0)
    shape = template.vertices[template.rigid].astype(float)
    rot0, _ = initial_poses(shape, points[:, template.rigid], 420.0, 128, 128)
    assert angle_error_deg(rotation, rot0).max() < 8.0  # scaled orthography vs perspective


def test_smoothing_has_no_lag_and_removes_jitter():
    n = 200
    t = np.arange(n) / 25.0
    yaw = 15 * np.sin(2 * np.pi * 0.5 * t)  # a slow, real head turn
    jitter = np.random.default_rng(0).normal(0, 1.0, n)
    rotation = Rotation.from_euler("y", (yaw + jitter)[:, None], degrees=True).as_matrix()
    translation = np.stack([0 * t, 0 * t, 0.6 + 0.01 * np.sin(2 * np.pi * 0.5 * t)], 1)
    smooth_rot, smooth_trans = smooth_poses(rotation, translation, window=7, order=2)
    smooth_yaw = euler_from_rotation(smooth_rot)[:, 0]
    # no lag: the cross-correlation with the true motion peaks at zero shift
    lags = range(-5, 6)
    scores = [np.corrcoef(np.roll(smooth_yaw, k)[10:-10], yaw[10:-10])[0, 1] for k in lags]
    assert list(lags)[int(np.argmax(scores))] == 0
    assert np.std(smooth_yaw - yaw) < 0.7 * np.std(jitter)  # SG(7,2) keeps ~0.6 of white noise
    np.testing.assert_allclose(smooth_trans[:, 2], translation[:, 2], atol=1e-3)


def test_euler_convention_yaw_is_about_the_vertical_axis():
    rotation = Rotation.from_euler("y", [[20.0]], degrees=True).as_matrix()
    yaw, pitch, roll = euler_from_rotation(rotation)[0]
    assert yaw == pytest.approx(20.0) and abs(pitch) < 1e-9 and abs(roll) < 1e-9


def test_fit_is_robust_to_a_few_wild_landmarks():
    template, points, rotation, _ = synthetic_sequence(n=40, noise=0.3)
    rng = np.random.default_rng(5)
    corrupt = points.copy()
    ids = rng.choice(template.rigid, 12, replace=False)
    corrupt[:, ids] += rng.normal(0, 25, (40, 12, 2))
    fit = fit_head_pose(corrupt, template.vertices, template.rigid, 256, 256, PoseConfig(shape_rounds=0))
    assert angle_error_deg(rotation, fit.rotation).max() < 2.0


def test_orthographic_landmarks_get_the_default_focal():
    """Landmarks with no perspective at all carry no focal information: the default is used."""
    template, _, rotation, translation = synthetic_sequence(n=60, noise=0.0)
    cam = np.einsum("nij,pj->npi", rotation, template.vertices.astype(float)) + translation[:, None]
    points = cam[..., :2] / translation[:, None, 2:3] * 420.0 + 128  # weak perspective
    fit = fit_head_pose(points, template.vertices, template.rigid, 256, 256)
    assert fit.focal_source == "default" and fit.focal_px == pytest.approx(2.5 * 256)
    # the camera model is now wrong (perspective vs none), so the angles are off a little
    assert angle_error_deg(rotation, fit.rotation).max() < 5.0


def test_numpy_savgol_equals_scipy(rng):
    from scipy.signal import savgol_filter

    from lokitalk.prepare.pose import savgol_smooth

    values = rng.standard_normal((50, 3))
    for window, order in [(7, 2), (5, 3), (9, 2)]:
        np.testing.assert_allclose(savgol_smooth(values, window, order),
                                   savgol_filter(values, window, order, axis=0, mode="interp"), atol=1e-10)

"""Seen vs novel head views of the test frames (lokitalk/evaluate/novelty.py)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lokitalk.evaluate.novelty import (nearest_rotation_deg, nearest_rotation_deg_reference, novel_view_mask,
                                       rotation_angle_deg, split_summary)


def _rotations(degrees_about_y):
    return Rotation.from_euler("y", np.asarray(degrees_about_y)[:, None], degrees=True).as_matrix()


def test_nearest_rotation_matches_the_slow_reference():
    rng = np.random.default_rng(0)
    # small head-like rotations plus a few large ones, so that both ends of arccos are exercised
    rotations = Rotation.from_rotvec(rng.normal(0, 0.15, (60, 3))).as_matrix()
    rotations[5] = rotations[6]  # an exact repeat: angle 0
    test, train = np.arange(40, 60), np.arange(0, 40)
    test[0] = 6
    fast = nearest_rotation_deg(rotations, test, train, chunk=7)
    slow = nearest_rotation_deg_reference(rotations, test, train)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert fast[0] == pytest.approx(0.0, abs=1e-5)


def test_angle_between_two_known_rotations():
    a, b = _rotations([10.0, 13.5])
    assert rotation_angle_deg(a, b) == pytest.approx(3.5, abs=1e-9)


def test_a_head_turned_past_every_training_pose_is_novel():
    yaw = np.concatenate([np.linspace(-4, 4, 50), [3.0, 4.5, 7.0, -9.0]])  # 4 test frames at the end
    rotations = _rotations(yaw)
    novel, distance = novel_view_mask(rotations, np.arange(50, 54), np.arange(0, 50), threshold_deg=2.0)
    np.testing.assert_allclose(distance, [0.0, 0.5, 3.0, 5.0], atol=0.1)
    assert novel.tolist() == [False, False, True, True]


def test_split_summary_averages_each_group_and_skips_missing_values():
    novel = np.array([False, False, True, True, True])
    values = {"psnr": np.array([30.0, 28.0, 20.0, 22.0, 24.0]), "lmd": np.array([1.0, np.nan, 3.0, np.nan, 5.0])}
    out = split_summary(values, novel)
    assert out["seen_views"] == {"frames": 2, "psnr": 29.0, "lmd": 1.0}
    assert out["novel_views"] == {"frames": 3, "psnr": 22.0, "lmd": 4.0}
    assert split_summary(values, np.zeros(5, bool))["novel_views"] == {"frames": 0}


def test_no_training_frames_is_an_error():
    with pytest.raises(ValueError, match="no training frames"):
        nearest_rotation_deg(_rotations([0.0, 1.0]), np.array([1]), np.array([], int))

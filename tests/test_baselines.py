"""The trivial baselines (lokitalk.evaluate.baselines) against values worked out by hand."""

import numpy as np
import pytest

from lokitalk.evaluate import metrics
from lokitalk.evaluate.baselines import trivial_baselines


def mean_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A stand-in perceptual distance: per-frame mean absolute difference in [0, 1]."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2, 3)) / 255.0


@pytest.fixture
def frames(rng):
    train = rng.integers(0, 255, (9, 16, 16, 3), dtype=np.uint8)
    picks = np.array([2, 7, 4])
    test = np.clip(train[picks].astype(int) + rng.integers(-6, 6, (3, 16, 16, 3)), 0, 255).astype(np.uint8)
    return train, test, picks


def test_both_baselines_match_hand_computed_values(frames):
    train, test, picks = frames
    result = trivial_baselines(train, test, lpips=mean_abs)
    mean = np.rint(train.astype(np.float64).mean(0)).astype(np.uint8)
    assert result["nearest_training_frame_indices"] == picks.tolist()
    assert result["mean_image_psnr"] == pytest.approx(metrics.mean_image_baseline(train, test), abs=1e-12)
    assert result["nearest_training_frame_psnr"] == pytest.approx(
        metrics.nearest_frame_baseline_reference(train, test), rel=1e-9)
    assert result["mean_image_lpips"] == pytest.approx(mean_abs(np.stack([mean] * 3), test).mean())
    assert result["nearest_training_frame_lpips"] == pytest.approx(mean_abs(train[picks], test).mean())
    assert result["nearest_training_frame_ssim"] == pytest.approx(
        np.mean([metrics.ssim(train[j], t) for j, t in zip(picks, test)]))
    assert result["nearest_training_frame_ssim"] > result["mean_image_ssim"]
    assert result["nearest_training_frame_lpips"] < result["mean_image_lpips"]


def test_no_lpips_weights_and_no_landmarks_are_reported_as_null(frames):
    train, test, _ = frames
    result = trivial_baselines(train, test, lpips=lambda a, b: None)
    assert result["mean_image_lpips"] is None and result["nearest_training_frame_lpips"] is None
    assert result["nearest_training_frame_lmd"] is None


def test_nearest_frame_lmd_uses_the_chosen_frames_landmarks_where_both_are_trusted(frames, rng):
    train, test, picks = frames
    mouth = np.arange(5, 25)
    train_lm = rng.random((9, 478, 2)) * 16
    test_lm = train_lm[picks].copy()
    test_lm[0, mouth] += [3.0, 4.0]  # 5 px off on the first test frame
    test_lm[1, mouth] += [0.0, 1.0]  # 1 px on the second
    test_lm[2, mouth] += [6.0, 8.0]  # 10 px on the third
    result = trivial_baselines(train, test, None, train_lm, test_lm, None, mouth)
    assert result["nearest_training_frame_lmd"] == pytest.approx((5 + 1 + 10) / 3)
    train_valid, test_valid = np.ones(9, bool), np.ones(3, bool)
    train_valid[7] = False  # the second test frame's nearest frame has untrusted landmarks
    result = trivial_baselines(train, test, None, train_lm, test_lm, (train_valid, test_valid), mouth)
    assert result["nearest_training_frame_lmd"] == pytest.approx((5 + 10) / 2)
    test_valid[:] = False
    result = trivial_baselines(train, test, None, train_lm, test_lm, (train_valid, test_valid), mouth)
    assert result["nearest_training_frame_lmd"] is None

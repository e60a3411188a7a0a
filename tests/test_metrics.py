import numpy as np
import pytest

from lokitalk.evaluate import metrics


def test_psnr_values_and_masks():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    assert metrics.psnr(a, a) == float("inf")
    expected = 10 * np.log10(255.0**2 / (3 * 255.0**2 / (8 * 8 * 3)))
    assert metrics.psnr(a, b) == pytest.approx(expected)
    mask = np.zeros((8, 8), bool)
    mask[4:, 4:] = True
    assert metrics.psnr(a, b, mask) == float("inf")  # the error is outside the mask
    assert np.isnan(metrics.psnr(a, b, np.zeros((8, 8), bool)))


def test_nearest_frame_baseline_matches_reference(rng):
    train = rng.integers(0, 255, (23, 12, 12, 3), dtype=np.uint8)
    test = np.clip(train[[3, 17]].astype(int) + rng.integers(-9, 9, (2, 12, 12, 3)), 0, 255).astype(np.uint8)
    fast = metrics.nearest_frame_baseline(train, test, chunk=5)
    assert fast == pytest.approx(metrics.nearest_frame_baseline_reference(train, test), rel=1e-6)
    assert fast > metrics.mean_image_baseline(train, test) + 5  # the oracle finds the near copies


def test_nearest_frame_indices_match_reference_across_chunks(rng):
    train = rng.integers(0, 255, (23, 10, 10, 3), dtype=np.uint8)
    train[20] = train[6]  # an exact tie: both pick the first of the two
    picks = [3, 17, 6, 22]
    test = np.clip(train[picks].astype(int) + rng.integers(-9, 9, (4, 10, 10, 3)), 0, 255).astype(np.uint8)
    reference = metrics.nearest_frame_indices_reference(train, test)
    assert reference.tolist() == picks
    for chunk in (1, 5, 64):
        assert metrics.nearest_frame_indices(train, test, chunk=chunk).tolist() == picks


def test_landmark_distance_and_ssim(rng):
    pts = rng.random((4, 478, 3)) * 100
    moved = pts.copy()
    moved[:, 10, 0] += 3.0
    assert metrics.landmark_distance(pts, moved, np.array([10, 11])) == pytest.approx(1.5)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.ssim(image, 255 - image) < 0.1


def test_region_error_budget_matches_reference_and_locates_the_error(rng):
    names = {0: "background", 1: "torso", 4: "face"}
    real = rng.integers(0, 255, (3, 10, 12, 3), dtype=np.uint8)
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[:, 5:, :] = 1
    labels[:, 1:4, 3:8] = 4
    labels[1, 0, 0] = 6  # a region not named: counted as "other"
    pred = real.copy()
    pred[:, 1:4, 3:8] = np.clip(pred[:, 1:4, 3:8].astype(int) + 40, 0, 255)  # all the error in the face
    fast = metrics.region_error_budget(pred, real, labels, names)
    slow = metrics.region_error_budget_reference(pred, real, labels, names)
    assert fast.keys() == slow.keys() == {"background", "torso", "face", "other"}
    for name in fast:
        for key in fast[name]:
            assert fast[name][key] == pytest.approx(slow[name][key], rel=1e-9), (name, key)
    assert fast["face"]["error_share"] == pytest.approx(1.0)
    assert fast["face"]["psnr_if_perfect"] == float("inf")  # fixing the face fixes every frame
    assert fast["torso"]["psnr"] == float("inf")
    assert sum(v["pixel_share"] for v in fast.values()) == pytest.approx(1.0)
    # the whole-frame PSNR is what a perfect torso leaves: the torso carried no error
    assert fast["torso"]["psnr_if_perfect"] == pytest.approx(np.mean([metrics.psnr(p, r) for p, r in zip(pred, real)]))

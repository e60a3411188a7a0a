"""Image and motion metrics for held-out frames, and the two trivial baselines they must beat.

All images are uint8 RGB [H,W,3]. PSNR is over all channels with a peak of 255; a mask limits it
to a region (mouth, eyes). The baselines use the same frames and split: the mean of the
training frames, and the training frame closest to each test frame (an oracle: it peeks).
"""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (pred.astype(np.float64) - real.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        diff = diff[mask]
    mse = diff.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, real: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred, real, channel_axis=2, data_range=255))


def landmark_distance(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> float:
    """Mean pixel distance between corresponding landmarks (LMD) over frames and `ids`."""
    return float(np.linalg.norm(pred[:, ids, :2] - real[:, ids, :2], axis=-1).mean())


def landmark_distance_per_frame(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[N]: LMD of each frame (their mean is `landmark_distance`)."""
    return np.linalg.norm(pred[:, ids, :2] - real[:, ids, :2], axis=-1).mean(axis=1)


def mean_image_baseline(train_frames: np.ndarray, test_frames: np.ndarray) -> float:
    mean = train_frames.astype(np.float64).mean(0)
    return float(np.mean([psnr(mean, t) for t in test_frames]))


def nearest_frame_baseline(train_frames: np.ndarray, test_frames: np.ndarray, chunk: int = 64) -> float:
    """Mean over test frames of the PSNR of the closest training frame (by MSE)."""
    train = train_frames.reshape(len(train_frames), -1).astype(np.float32)
    scores = []
    for t in test_frames.reshape(len(test_frames), -1).astype(np.float32):
        best = np.inf
        for start in range(0, len(train), chunk):
            best = min(best, float(((train[start:start + chunk] - t) ** 2).mean(1).min()))
        scores.append(float("inf") if best == 0 else 10 * np.log10(255.0**2 / best))
    return float(np.mean(scores))


def nearest_frame_baseline_reference(train_frames: np.ndarray, test_frames: np.ndarray) -> float:
    """Slow reference: every pair through `psnr`."""
    return float(np.mean([max(psnr(tr, te) for tr in train_frames) for te in test_frames]))

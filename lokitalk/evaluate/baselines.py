"""The two trivial baselines every quality figure stands beside (../shared/data/README.md).

- **Mean image**: the mean of the model's training frames, shown for every test frame. What a
  model that learned nothing but the average look would score.
- **Nearest training frame**: for each test frame, the training frame closest to it in pixels.
  An oracle (it peeks at the answer to choose), but a sharp real image: its LPIPS says what a
  crisp frame with the wrong pose or mouth scores, and its LMD how far the mouth of the most
  similar frame the model saw is from the test mouth.

Both are measured with the same metrics as the model (PSNR, SSIM, LPIPS; LMD for the nearest
frame from the prepared landmarks of both real frames, which come from the landmarker that
`evaluate` runs on the rendered frames).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import metrics

LpipsFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


def trivial_baselines(train_frames: np.ndarray, test_frames: np.ndarray, lpips: LpipsFn | None = None,
                      train_landmarks: np.ndarray | None = None, test_landmarks: np.ndarray | None = None,
                      landmarks_valid: tuple[np.ndarray, np.ndarray] | None = None,
                      mouth_ids: np.ndarray | None = None) -> dict:
    """Both baselines on the same test frames.

    train_frames, test_frames: uint8 [N,H,W,3] at the size the model renders. `lpips(a, b)` ->
    per-frame LPIPS [N] or None (weights not installed: reported as null). Landmarks ([N,478,>=2]
    px at that size) with their valid masks (train, test) and the mouth's landmark ids give the
    nearest frame's LMD, over test frames where both frames' landmarks are trusted.
    """
    mean = train_frames.mean(0, dtype=np.float64)  # float64 sums without a float64 copy of every frame
    # PSNR of the float mean (metrics.mean_image_baseline); SSIM and LPIPS need an image: the rounded mean
    mean_image = np.broadcast_to(np.clip(np.rint(mean), 0, 255).astype(np.uint8), test_frames.shape)
    nearest = metrics.nearest_frame_indices(train_frames, test_frames)
    chosen = train_frames[nearest]
    result = {
        "mean_image_psnr": metrics.mean_image_baseline(train_frames, test_frames),
        "mean_image_ssim": float(np.mean([metrics.ssim(mean_image[0], t) for t in test_frames])),
        "nearest_training_frame_psnr": float(np.mean([metrics.psnr(c, t) for c, t in zip(chosen, test_frames)])),
        "nearest_training_frame_ssim": float(np.mean([metrics.ssim(c, t) for c, t in zip(chosen, test_frames)])),
        "mean_image_lpips": None,
        "nearest_training_frame_lpips": None,
        "nearest_training_frame_lmd": None,
    }
    if lpips is not None:
        for key, images in (("mean_image_lpips", mean_image), ("nearest_training_frame_lpips", chosen)):
            values = lpips(np.ascontiguousarray(images), test_frames)
            result[key] = None if values is None else float(np.mean(values))
    if train_landmarks is not None and test_landmarks is not None and mouth_ids is not None:
        ok = np.ones(len(test_frames), dtype=bool)
        if landmarks_valid is not None:
            ok = landmarks_valid[1] & landmarks_valid[0][nearest]
        if ok.any():
            result["nearest_training_frame_lmd"] = metrics.landmark_distance(
                train_landmarks[nearest[ok]], test_landmarks[ok], mouth_ids)
    result["nearest_training_frame_indices"] = nearest.tolist()  # positions in the training frames given
    return result

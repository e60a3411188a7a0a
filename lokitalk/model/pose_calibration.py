"""A pose correction the model applies to every pose it is given: the tracker's pose-dependent bias.

Training with pose refinement (lokitalk.train.pose_refine) learns a correction for each training
frame. Part of it depends on the tracked pose itself: on id04, 70 % of the yaw corrections'
variance is predicted by an affine function of the tracked pose (docs/RESULTS.md, "Per-frame
pose refinement"). Frames the model never trained on (test frames, the poses `speak` replays)
have their tracked pose only, so the model keeps that affine map, `weights` [7,6]:

    (w, u / TRANSLATION_UNIT_M) = [pose_vector(R, t), 1] @ weights
    R' = R Exp(w),  t' = t + R u

(the same correction as a training frame's, lokitalk.train.pose_refine), fitted at the end of
training and applied by `render.frames.render_frame` to every frame it renders.
"""

from __future__ import annotations

import numpy as np
import torch

from .rigid import rotation_from_vector

# the translation part's unit, so that one optimizer step moves the rotation and translation
# parts by similar image distances (a 0.01 rad turn moves a point 10 cm from the head's centre by 1 mm)
TRANSLATION_UNIT_M = 0.1
FEATURES = 7  # pose vector (rotation vector, translation) and a constant


def corrected_pose(rotation: torch.Tensor, translation: torch.Tensor, row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A tracked pose [3,3], [3] and a correction row (w, u / TRANSLATION_UNIT_M) [6] -> the corrected pose."""
    turn = rotation_from_vector(row[None, :3].to(rotation.dtype))[0]
    return rotation @ turn, translation + rotation @ (row[3:].to(rotation.dtype) * TRANSLATION_UNIT_M)


def pose_features(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """A pose [3,3], [3] -> [7]: its pose vector and 1."""
    from .field import pose_vector

    vector = pose_vector(rotation, translation)
    return torch.cat([vector, torch.ones(1, dtype=vector.dtype, device=vector.device)])


def pose_feature_matrix(rotations, translations) -> np.ndarray:
    """Many poses [N,3,3], [N,3] (arrays) -> their features [N,7], float64."""
    return np.stack([pose_features(torch.as_tensor(r, dtype=torch.float64), torch.as_tensor(t, dtype=torch.float64)).numpy()
                     for r, t in zip(rotations, translations)])


def calibrate(conditioning: dict[str, torch.Tensor], weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """One frame's conditioning -> the same with its pose corrected by the affine map `weights` [7,6]."""
    rotation = conditioning["rotation"].to(weights.device, torch.float64)
    translation = conditioning["translation"].to(weights.device, torch.float64)
    with torch.autocast(device_type=weights.device.type, enabled=False):  # render paths run inside one
        row = pose_features(rotation, translation) @ weights.double()
        rotation, translation = corrected_pose(rotation, translation, row)
    dtype = conditioning["rotation"].dtype
    return {**conditioning, "rotation": rotation.to(dtype), "translation": translation.to(dtype)}

"""Per-frame head-pose corrections, learned with the field (`TrainConfig.pose_refinement`).

The tracker's poses (prepare.pose: a rigid fit to mediapipe landmarks) are off by up to a few
degrees and millimetres on turned heads. With a trained model frozen, fitting one frame's pose to
its pixels gains up to +1.5 dB on id04's training frames (yaw corrections up to 4°;
docs/RESULTS.md, "Per-frame pose refinement"). Such errors make the frames disagree about
where a feature sits in the canonical space, which then averages them into a blur or a double
image. Here every training frame n gets a correction (rotation vector w_n, translation u_n, in
the head frame) that is learned with the rest of the model:

    R_n' = R_n Exp(w_n),   t_n' = t_n + R_n u_n

so X_cam = R_n' X + t_n' = R_n (Exp(w_n) X + u_n) + t_n: the head frame is moved by (Exp(w_n), u_n)
before the tracked pose applies. A ray in the head frame (origin o, direction d) becomes
o' = Exp(w_n)^T (o - u_n), d' = Exp(w_n)^T d; `corrected_rays_reference` recomputes the rays from the
pixels instead, for the tests.

A frame is drawn a few dozen times in a CPU run of a few thousand steps (id04: 586 training
frames, 3000 one-frame steps), too few for a correction of its own. So corrections live on knots
every `knot_frames` frames and a frame's is the linear interpolation of its two knots: the
tracker's errors are smooth over a few frames anyway (its poses are smoothed over 7). With
`knot_frames` 1 every frame has its own.

The corrections are a gauge: moving every frame's pose by one common transform and the canonical
space by its inverse renders the same images. Frames not trained on have only their tracked pose,
so the common part must stay zero: after each step the corrections' mean over the training frames
is subtracted (`recentre`). Only the frame-to-frame disagreement is learned; at every checkpoint
its pose-dependent part is fitted as an affine map of the tracked pose (`fit_pose_calibration`),
which the model keeps and rendering applies to every frame (lokitalk.model.pose_calibration).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.rays import pixel_rays
from ..model.pose_calibration import FEATURES, TRANSLATION_UNIT_M, corrected_pose, pose_feature_matrix
from ..model.rigid import rotation_from_vector


class FramePoseCorrections(nn.Module):
    """Corrections (w, u / TRANSLATION_UNIT_M) on knots every `knot_frames` avatar frames, starting
    at zero. A sparse embedding: a step's gradient reaches only the two knots of the frame it drew
    (torch.optim.SparseAdam), so a knot does not drift on the momentum of steps that never saw it."""

    def __init__(self, num_frames: int, training_frames: np.ndarray, knot_frames: int = 1):
        super().__init__()
        if knot_frames < 1:
            raise ValueError(f"knot_frames is a frame count, 1 or more, not {knot_frames}")
        self.knot_frames = knot_frames
        self.table = nn.Embedding((num_frames - 1) // knot_frames + 2, 6, sparse=True)
        nn.init.zeros_(self.table.weight)
        self.register_buffer("training_frames", torch.as_tensor(np.asarray(training_frames), dtype=torch.long),
                             persistent=False)

    def _rows(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [F] -> their interpolated corrections [F,6]."""
        position = frames.to(self.table.weight.device).double() / self.knot_frames
        first = position.floor().long()
        share = (position - first).to(self.table.weight.dtype)[:, None]
        return (1.0 - share) * self.table(first) + share * self.table(first + 1)

    def rows(self, frames: torch.Tensor | np.ndarray | int) -> torch.Tensor:
        """Frames -> their corrections [F,6] as stored (w, u / TRANSLATION_UNIT_M)."""
        return self._rows(torch.as_tensor(np.asarray(frames), dtype=torch.long).reshape(-1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A one-frame batch (data.rays.RaySampler.sample) -> the same batch at the corrected pose:
        rays, rotation and translation (what the deformation's pose input and rigid torso read)."""
        device = self.table.weight.device
        # in float32 whatever the autocast around it (the LPIPS patch step runs inside one): a ray
        # origin 0.6 m away in bfloat16 is off by millimetres
        with torch.autocast(device_type=device.type, enabled=False):
            row = self.rows(batch["frame"])[0]
            turn, shift = rotation_from_vector(row[None, :3])[0], row[3:] * TRANSLATION_UNIT_M
            origins, directions = batch["origins"].to(device), batch["directions"].to(device)
            rotation, translation = corrected_pose(batch["rotation"].to(device), batch["translation"].to(device), row)
            origins, directions = (origins - shift) @ turn, directions @ turn  # rows: (Exp(w)^T (o - u))^T
        return {**batch,
                "origins": origins,
                "directions": directions,
                "rotation": rotation,
                "translation": translation}

    @torch.no_grad()
    def recentre(self) -> None:
        """Subtract the training frames' mean correction (the gauge: see the module docstring)."""
        # interpolation weights sum to one, so shifting every knot shifts every frame by the same
        self.table.weight -= self._rows(self.training_frames).mean(0)

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """Median and largest correction over the training frames: degrees and millimetres."""
        rows = self._rows(self.training_frames).float()
        degrees = torch.rad2deg(rows[:, :3].norm(dim=-1))
        millimetres = rows[:, 3:].norm(dim=-1) * TRANSLATION_UNIT_M * 1000.0
        return {"rotation_deg_median": float(degrees.median()), "rotation_deg_max": float(degrees.max()),
                "translation_mm_median": float(millimetres.median()), "translation_mm_max": float(millimetres.max())}


def corrected_rays_reference(rotation: np.ndarray, translation: np.ndarray, correction: np.ndarray, focal: float,
                             cx: float, cy: float, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: the corrected pose built as 4x4 matrices (float64), then the rays of its
    pixels by `pixel_rays`. `correction`: (w, u / TRANSLATION_UNIT_M), as stored."""
    turn = rotation_from_vector(torch.as_tensor(correction[None, :3], dtype=torch.float64))[0].numpy()
    move = np.eye(4)
    move[:3, :3], move[:3, 3] = turn, np.asarray(correction[3:], np.float64) * TRANSLATION_UNIT_M
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    corrected = pose @ move
    return pixel_rays(corrected[:3, :3], corrected[:3, 3], focal, cx, cy, xs, ys)


def fit_pose_calibration(rotations: np.ndarray, translations: np.ndarray, corrections: np.ndarray,
                         ridge: float = 1e-3) -> np.ndarray:
    """Training frames' tracked poses [N,3,3], [N,3] and their corrections [N,6] -> the affine map
    [7,6] (lokitalk.model.pose_calibration) that best predicts the corrections from the poses:
    ridge regression on standardised pose features (the constant unpenalised), `ridge` x N."""
    features = pose_feature_matrix(rotations, translations)
    scale = np.append(features[:, :-1].std(0) + 1e-9, 1.0)
    scaled = features / scale
    penalty = ridge * len(features) * np.diag([1.0] * (FEATURES - 1) + [0.0])
    weights = np.linalg.solve(scaled.T @ scaled + penalty, scaled.T @ np.asarray(corrections, np.float64))
    return weights / scale[:, None]

"""How far a model's face surface is from the tracked face: a geometry check for novel views.

A model can render its training views well with its face surface centimetres off in depth; the
error shows only when the head turns further than it did in training (the rendered mouth lands
beside the real one). The avatar's fitted face points (lokitalk.train.face_depth) give a depth
oracle for every frame: render rays through the visible points and compare where they stop.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.renderer import RenderConfig
from ..render.frames import frame_conditioning, render_batch
from ..train.config import TrainConfig
from ..train.face_depth import DEPTH_UNIT_M, FaceDepthPoints, depth_rays, face_depth_error, visible_points

MIN_FACING = TrainConfig.face_depth_min_facing  # the points training supervises by default


@torch.no_grad()
def face_depth_errors(model, grid, render_config: RenderConfig, avatar, frames: np.ndarray,
                      face: FaceDepthPoints) -> np.ndarray:
    """Per frame, the median absolute termination error (cm) of rays through its visible face
    points (with per-frame points, the frame's own too: FaceDepthPoints.at), at the pose the model
    renders the frame with (its calibration applied); NaN where no point faces the camera. Rays
    where the model renders nothing count as a zero error (the error is weighted by opacity, as
    in training)."""
    device = next(model.parameters()).device
    config = RenderConfig(samples_per_ray=render_config.samples_per_ray, box_sampling=render_config.box_sampling,
                          fine_samples=render_config.fine_samples, fine_padding=render_config.fine_padding,
                          fine_with_coarse=render_config.fine_with_coarse)
    errors = np.full(len(frames), np.nan)
    for row, index in enumerate(frames):
        conditioning = model.calibrated(frame_conditioning(avatar, int(index)))
        rotation = conditioning["rotation"].double().cpu().numpy()
        translation = conditioning["translation"].double().cpu().numpy()
        seen = face.at(int(index))
        visible = visible_points(seen, rotation, translation, MIN_FACING)
        if not len(visible):
            continue
        origins, directions, distance = depth_rays(seen.points[visible], rotation, translation)
        batch = {**conditioning, "origins": torch.from_numpy(origins).float(),
                 "directions": torch.from_numpy(directions).float(), "background": torch.zeros(len(visible), 3)}
        out = render_batch(model, batch, grid, config)
        error = face_depth_error(out.depth.float(), out.opacity.float(), torch.from_numpy(distance).float().to(device))
        errors[row] = float(error.abs().median()) / DEPTH_UNIT_M
    return errors

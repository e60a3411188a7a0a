"""Render rays and whole frames of a trained talking head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data.avatar import Avatar
from ..data.rays import pixel_rays
from ..model.field import TalkingHead
from ..model.renderer import OccupancyGrid, RenderConfig, RenderOutput, render_rays

# distance from the camera to either side of the head box along a ray (metres): the box's
# half-diagonal, so near/far always enclose it
BOX_REACH = 0.5


def frame_render_config(base: RenderConfig, translation: torch.Tensor) -> RenderConfig:
    """near/far around the head for this frame's camera distance."""
    distance = float(torch.linalg.norm(translation))
    return replace(base, near=max(0.05, distance - BOX_REACH), far=distance + BOX_REACH)


def render_batch(model: TalkingHead, batch: dict[str, torch.Tensor], grid: OccupancyGrid | None,
                 config: RenderConfig, generator: torch.Generator | None = None) -> RenderOutput:
    device = next(model.parameters()).device
    origins = batch["origins"].to(device)
    directions = batch["directions"].to(device)
    background = batch["background"].to(device)
    field_fn = model.field_for(batch, directions)
    return render_rays(field_fn, origins, directions, background, frame_render_config(config, batch["translation"]),
                       grid, generator)


def frame_conditioning(avatar: Avatar, index: int) -> dict[str, torch.Tensor]:
    return {
        "eye_ratio": torch.from_numpy(avatar.eye_ratio[index].astype(np.float32)),
        "lip_feature": torch.from_numpy(avatar.lip_feature[index].astype(np.float32)),
        "rotation": torch.from_numpy(avatar.rotation[index]).float(),
        "translation": torch.from_numpy(avatar.translation[index]).float(),
    }


@torch.no_grad()
def render_frame(model: TalkingHead, avatar: Avatar, conditioning: dict[str, torch.Tensor],
                 grid: OccupancyGrid | None, config: RenderConfig, background: np.ndarray,
                 chunk: int = 16384, scale: float = 1.0) -> np.ndarray:
    """Render every pixel of one frame with the given conditioning -> uint8 [H,W,3] at
    `scale` x the avatar's size (`background` must already be at that size)."""
    cam = avatar.camera.scaled(scale)
    ys, xs = np.mgrid[0:cam.height, 0:cam.width]
    xs, ys = xs.ravel(), ys.ravel()
    rotation = conditioning["rotation"].double().numpy()
    translation = conditioning["translation"].double().numpy()
    origins, dirs = pixel_rays(rotation, translation, cam.focal_px, cam.cx, cam.cy, xs, ys)
    bg = background.reshape(-1, 3).astype(np.float32) / 255.0
    out = np.empty((len(xs), 3), np.float32)
    for start in range(0, len(xs), chunk):
        sl = slice(start, start + chunk)
        batch = dict(conditioning, origins=torch.from_numpy(origins[sl]).float(),
                     directions=torch.from_numpy(dirs[sl]).float(), background=torch.from_numpy(bg[sl]))
        out[sl] = render_batch(model, batch, grid, config).rgb.float().cpu().numpy()
    return (out.reshape(cam.height, cam.width, 3).clip(0, 1) * 255 + 0.5).astype(np.uint8)

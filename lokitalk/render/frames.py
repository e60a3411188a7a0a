"""Render rays and whole frames of a trained talking head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data.avatar import Avatar
from ..data.rays import frame_rays
from ..model.field import TalkingHead
from ..model.renderer import OccupancyGrid, RenderConfig, RenderOutput, render_rays

# distance from the camera to either side of the head box along a ray (metres): the box's
# half-diagonal, so near/far always enclose it
BOX_REACH = 0.5


def frame_render_config(base: RenderConfig, translation: torch.Tensor) -> RenderConfig:
    """near/far around the head for this frame's camera distance."""
    distance = float(torch.linalg.norm(translation.detach()))
    return replace(base, near=max(0.05, distance - BOX_REACH), far=distance + BOX_REACH)


def render_batch(model: TalkingHead, batch: dict[str, torch.Tensor], grid: OccupancyGrid | None,
                 config: RenderConfig, generator: torch.Generator | None = None) -> RenderOutput:
    device = next(model.parameters()).device
    origins = batch["origins"].to(device)
    directions = batch["directions"].to(device)
    background = batch["background"].to(device)
    field_fn = model.field_for(batch, directions)
    box = (model.canonical.box_min, model.canonical.box_max) if config.box_sampling else None
    return render_rays(field_fn, origins, directions, background, frame_render_config(config, batch["translation"]),
                       grid, generator, box)


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
                 chunk: int | None = None, scale: float = 1.0) -> np.ndarray:
    """Render every pixel of one frame with the given conditioning -> uint8 [H,W,3] at
    `scale` x the avatar's size (`background` must already be at that size). Rays are built on
    the model's device; `chunk` rays at a time (default: a whole 512x512 frame on a GPU, 16k on
    the CPU, where smaller chunks stay in cache)."""
    conditioning = model.calibrated(conditioning)  # frames not trained on: the model's pose correction
    cam = avatar.camera.scaled(scale)
    device = next(model.parameters()).device
    chunk = chunk or (1 << 18 if device.type == "cuda" else 16384)
    origins, dirs = frame_rays(conditioning["rotation"], conditioning["translation"], cam.focal_px, cam.cx, cam.cy,
                               cam.width, cam.height, device)
    bg = torch.as_tensor(background, device=device).reshape(-1, 3).float() / 255.0
    conditioning = {k: v.to(device) for k, v in conditioning.items()}
    out = torch.empty((cam.height * cam.width, 3), dtype=torch.float32, device=device)
    for start in range(0, out.shape[0], chunk):
        sl = slice(start, start + chunk)
        batch = dict(conditioning, origins=origins[sl], directions=dirs[sl], background=bg[sl])
        out[sl] = render_batch(model, batch, grid, config).rgb.float()
    return (out.reshape(cam.height, cam.width, 3).clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

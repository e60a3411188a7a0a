"""Load a trained model folder (written by `lokitalk train`) for rendering or evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputError
from ..model.field import TalkingHead
from ..model.renderer import OccupancyGrid, RenderConfig
from ..model.resample import PADDING
from ..train.accelerate import Acceleration, accelerate_model, resolve
from ..train.checkpoint import model_config_from_dict

# rays stop once 0.1 % of the light gets through: a pixel changes by at most 0.26 of a grey level,
# and the samples behind the face (a third of those evaluated, measured on id01) are skipped
RENDER_TERMINATION = 1e-3


@dataclass
class TrainedModel:
    model: TalkingHead
    grid: OccupancyGrid
    render_config: RenderConfig
    meta: dict
    root: Path
    image_scale: float = 1.0  # the size, relative to the avatar, the model was trained at
    acceleration: Acceleration = Acceleration(amp=False, amp_dtype=None, compile=False)
    device: torch.device = torch.device("cpu")

    @property
    def avatar_dir(self) -> Path:
        return Path(self.meta["avatar"])


def load_trained(model_dir: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    root = Path(model_dir)
    weights = root / "model.safetensors"
    if not (root / "model.json").exists():
        raise InputError(f"{root} is not a LokiTalk model folder (no model.json)")
    if not weights.exists():
        hint = " (training has not finished: run train with --resume)" if (root / "checkpoint.json").exists() else ""
        raise InputError(f"{root} has no trained weights{hint}")
    meta = json.loads((root / "model.json").read_text())
    config = model_config_from_dict(meta["model"])
    tensors = load_file(str(weights))
    model = TalkingHead(config)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    resolution = tensors["grid.density"].shape[0]
    grid = OccupancyGrid(config.field.box_min, config.field.box_max, resolution)
    grid_state = {k[len("grid."):]: v for k, v in tensors.items() if k.startswith("grid.")}
    grid_state["occupied"] = grid_state["occupied"].bool()
    grid.load_state_dict(grid_state)
    model.to(device).eval()
    grid.to(device)
    samples = int(meta.get("train", {}).get("samples_per_ray", 32))
    scale = float(meta.get("train", {}).get("image_scale", 1.0))
    dev = torch.device(device)
    accel = resolve(dev)  # bf16 + compiled field on CUDA, eager fp32 elsewhere
    accelerate_model(model, accel)
    # rendered as trained: models from before box sampling spread their samples over near..far
    box_sampling = bool(meta.get("train", {}).get("box_sampling", False))
    fine_samples = int(meta.get("train", {}).get("fine_samples", 0))  # and with the proposal stage it trained with
    fine_padding = float(meta.get("train", {}).get("fine_padding", PADDING))
    # but never with the union's coarse samples (train.config.FINE_WITH_COARSE): they give faint density
    # its gradient in training; rendering needs the fine ones alone (id04 and id01 union models: -0.06 to
    # -0.09 dB, LPIPS and LMD level or better, at 1.44-1.56x the frame rate; docs/RESULTS.md, "The
    # proposal union")
    render_config = RenderConfig(samples_per_ray=samples, termination=RENDER_TERMINATION, box_sampling=box_sampling,
                                 fine_samples=fine_samples, fine_padding=fine_padding, fine_with_coarse=False)
    return TrainedModel(model, grid, render_config, meta, root, scale, accel, dev)

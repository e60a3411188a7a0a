"""Model folders and checkpoints.

MODEL_DIR/
  model.json            configs, the avatar it was trained on, preset, LokiTalk version
  checkpoint.safetensors  model + occupancy grid tensors of the last checkpoint
  trainer_state.pt      optimizer, scheduler, step and random-generator states of that checkpoint
  checkpoint.json       written last, after both files above: {"step": N} (a checkpoint exists
                        only when this says so, so a kill while writing never corrupts a resume)
  train_log.csv         one row per logged step
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..model.deformation import DeformationConfig
from ..model.encoding import TriPlaneConfig
from ..model.field import FieldConfig, ModelConfig


def model_config_to_dict(config: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    f = dict(data["field"])
    f["grid"] = TriPlaneConfig(**f["grid"])
    f["box_min"], f["box_max"] = tuple(f["box_min"]), tuple(f["box_max"])
    identity = None
    if data.get("identity") is not None:  # a multi-identity (prior or fine-tuned) model
        from ..model.identity import IdentityConfig

        identity = IdentityConfig(**data["identity"])
    d = dict(data["deformation"])
    if "reference_pose" in d:
        d["reference_pose"] = tuple(d["reference_pose"])
    return ModelConfig(field=FieldConfig(**f), deformation=DeformationConfig(**d), identity=identity,
                       pose_calibration=bool(data.get("pose_calibration", False)))


def _atomic_replace(tmp: Path, final: Path) -> None:
    tmp.replace(final)


def save_checkpoint(model_dir: Path, step: int, tensors: dict[str, torch.Tensor], trainer_state: dict[str, Any]) -> None:
    model_dir = Path(model_dir)
    tmp_weights = model_dir / "checkpoint.safetensors.tmp"
    tmp_state = model_dir / "trainer_state.pt.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp_weights))
    torch.save(trainer_state, tmp_state)
    pointer = model_dir / "checkpoint.json"
    pointer.unlink(missing_ok=True)  # no valid checkpoint while the pair is being replaced
    _atomic_replace(tmp_weights, model_dir / "checkpoint.safetensors")
    _atomic_replace(tmp_state, model_dir / "trainer_state.pt")
    tmp_pointer = model_dir / "checkpoint.json.tmp"
    tmp_pointer.write_text(json.dumps({"step": step}))
    _atomic_replace(tmp_pointer, pointer)


def load_checkpoint(model_dir: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
    model_dir = Path(model_dir)
    pointer = model_dir / "checkpoint.json"
    if not pointer.exists():
        return None
    step = json.loads(pointer.read_text())["step"]
    tensors = load_file(str(model_dir / "checkpoint.safetensors"))
    state = torch.load(model_dir / "trainer_state.pt", weights_only=False)
    return step, tensors, state

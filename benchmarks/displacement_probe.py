"""How far a trained region model's two deformation stages move the points of the head and body.

    python benchmarks/displacement_probe.py MODEL_DIR... [--points 20000] [--frames 5]

Points are drawn uniformly in the field's box and kept where the canonical density is above 4
(the occupied part of the canonical space); a point with head-frame y < 8 cm counts as head
(the chin is at about +9 cm), the rest as body. For a few evenly spaced test frames, each point
goes through the deformation with that frame's lip feature, eye ratio and pose; the face stage's
displacement is x1 - x, the torso stage's the rest. Printed: the medians over points, averaged
over the frames, in cm. The face stage should move points by about a centimetre (lips, lids);
the torso stage moves the body by centimetres when the head turns. A face stage that moves the
head by many centimetres has scrambled the canonical space (docs/RESULTS.md, "A failed run").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar
from lokitalk.model.field import pose_vector
from lokitalk.render.frames import frame_conditioning
from lokitalk.render.loading import load_trained

HEAD_MAX_Y = 0.08  # metres, head frame (y down)


def stage_displacements(model_dir: Path, points: int = 20000, frames: int = 5, seed: int = 0) -> dict:
    trained = load_trained(model_dir, "cpu")
    avatar = load_avatar(trained.avatar_dir)
    model, deform = trained.model, trained.model.deformation
    if not hasattr(deform, "torso_net"):
        raise SystemExit(f"{model_dir}: not a region model (the global deformation has no stages)")
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(model.config.field.box_min), torch.tensor(model.config.field.box_max)
    with torch.no_grad():
        candidates = low + (high - low) * torch.rand(points * 15, 3, generator=gen)
        x = candidates[model.canonical.density(candidates) > 4.0][:points]
        head = x[:, 1] < HEAD_MAX_Y
        config = model.config.deformation
        test = avatar.split.test
        rows = []
        for index in test[np.linspace(0, len(test) - 1, frames).round().astype(int)]:
            c = frame_conditioning(avatar, int(index))
            lip = (c["lip_feature"][None] * config.lip_scale).float()
            eye = ((c["eye_ratio"][None] - config.eye_mean) * config.eye_scale).float().reshape(1, -1)
            pose = pose_vector(c["rotation"], c["translation"]).reshape(1, -1).float()
            out = deform(x, lip, eye, pose)
            stage1 = x + out.face_offset
            face = (stage1 - x).norm(dim=-1)
            torso = (out.canonical - stage1).norm(dim=-1)
            rows.append([float(v.median()) for v in (face[head], torso[head], face[~head], torso[~head])])
    cm = np.mean(rows, 0) * 100
    return {"model": str(model_dir), "head_points": int(head.sum()), "body_points": int((~head).sum()),
            "face_stage_head_cm": round(cm[0], 2), "torso_stage_head_cm": round(cm[1], 2),
            "face_stage_body_cm": round(cm[2], 2), "torso_stage_body_cm": round(cm[3], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    for model_dir in args.models:
        print(json.dumps(stage_displacements(model_dir, args.points, args.frames)), flush=True)


if __name__ == "__main__":
    main()

"""How far a region model's two deformation stages move the points of the head and the body.

The face stage is meant for lips and lids; the torso stage moves the body by centimetres when
the head turns. In good id01 `tiny` runs the face stage moved the head's points by a median
1.5-4.9 cm (a free remapping of the canonical space, same in every frame, costs nothing; `fast`
runs at offset_scale 0.1: 0.6-1 cm); in the one run that rendered a smeared, doubled face 3 dB
below its siblings, by 9.2 cm, and the body's by 24 cm (docs/RESULTS.md, "A failed run"); in
`fast` runs that blew up at offset_scale 1.0, by 1.5-2 m ("The deformation nets blew up"). `evaluate` reports
these figures so that such a run is recognised, not just scored low.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.field import TalkingHead

HEAD_MAX_Y = 0.08  # metres, head frame (y down): the chin is at about +9 cm
OCCUPIED_DENSITY = 4.0  # canonical density above which a point counts as part of the person


@torch.no_grad()
def stage_displacements(model: TalkingHead, conditionings: list[dict[str, torch.Tensor]], points: int = 20000,
                        seed: int = 0, min_density: float = OCCUPIED_DENSITY) -> dict | None:
    """Median displacement (cm) of occupied canonical-space points by each stage, head and
    body apart, averaged over the frames whose `conditionings` (render.frames.frame_conditioning)
    are given. None for a model without stages (global deformation); the figures None with 0
    points where no point is occupied yet (a model of a few steps: nothing to measure)."""
    deform = model.deformation
    if not hasattr(deform, "torso_net"):
        return None
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(model.config.field.box_min), torch.tensor(model.config.field.box_max)
    candidates = (low + (high - low) * torch.rand(points * 15, 3, generator=gen)).to(device)
    x = candidates[model.canonical_density(candidates) > min_density][:points]
    if len(x) == 0:
        return {"face_stage_head_cm": None, "torso_stage_head_cm": None, "face_stage_body_cm": None,
                "torso_stage_body_cm": None, "head_points": 0, "body_points": 0, "frames": len(conditionings)}
    head = x[:, 1] < HEAD_MAX_Y
    rows = []
    for c in conditionings:
        lip, eye, pose, identity = model.frame_signals(c, device)  # as rendering reads them
        extra = () if identity is None else (identity.deformation,)
        out = deform(x, lip[None].float(), eye[None].float(), pose[None].float(), *extra)
        stage1 = x + out.face_offset
        face, torso = (stage1 - x).norm(dim=-1), (out.canonical - stage1).norm(dim=-1)
        rows.append([_median(v) for v in (face[head], torso[head], face[~head], torso[~head])])
    cm = np.nanmean(np.array(rows, float), 0) * 100
    return {"face_stage_head_cm": round(float(cm[0]), 2), "torso_stage_head_cm": round(float(cm[1]), 2),
            "face_stage_body_cm": round(float(cm[2]), 2), "torso_stage_body_cm": round(float(cm[3]), 2),
            "head_points": int(head.sum()), "body_points": int((~head).sum()), "frames": len(conditionings)}


def _median(values: torch.Tensor) -> float:
    return float(values.median()) if len(values) else float("nan")

"""The deformation probe that `evaluate` reports, against a point-by-point reference."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from lokitalk.evaluate.deformation import HEAD_MAX_Y, stage_displacements
from lokitalk.model.field import ModelConfig, TalkingHead, pose_vector


def conditioning(seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {"lip_feature": torch.from_numpy(rng.normal(size=16).astype(np.float32)),
            "eye_ratio": torch.from_numpy(rng.uniform(0.2, 0.3, size=2).astype(np.float32)),
            "rotation": torch.from_numpy(Rotation.from_euler("yxz", rng.normal(0, 8, 3), degrees=True).as_matrix()).float(),
            "translation": torch.tensor([0.0, 0.0, 0.6])}


def reference(model: TalkingHead, c: dict, points: torch.Tensor) -> list[float]:
    """One point at a time: stage 1 and stage 2 displacement medians, head and body apart."""
    d = model.config.deformation
    lip = c["lip_feature"][None] * d.lip_scale
    eye = ((c["eye_ratio"][None] - d.eye_mean) * d.eye_scale).reshape(1, -1)
    pose = pose_vector(c["rotation"], c["translation"]).reshape(1, -1)
    face, torso, head = [], [], []
    for p in points:
        out = model.deformation(p[None], lip, eye, pose)
        stage1 = p[None] + out.face_offset
        face.append(float((stage1 - p).norm()))
        torso.append(float((out.canonical - stage1).norm()))
        head.append(bool(p[1] < HEAD_MAX_Y))
    face, torso, head = np.array(face), np.array(torso), np.array(head)
    return [lower_median(face[head]), lower_median(torso[head]), lower_median(face[~head]), lower_median(torso[~head])]


def lower_median(values: np.ndarray) -> float:
    """torch.median's convention: the lower of the two middle values of an even count."""
    return float(np.sort(values)[(len(values) - 1) // 2])


def test_stage_displacements_match_a_point_by_point_reference():
    torch.manual_seed(0)
    model = TalkingHead(ModelConfig())
    with torch.no_grad():
        fresh = stage_displacements(model, [conditioning(0)], points=200, min_density=-1.0)
        assert fresh["face_stage_head_cm"] == fresh["torso_stage_body_cm"] == 0.0  # a fresh model moves nothing
        torch.nn.init.normal_(model.deformation.face_out.weight, std=0.02)
        torch.nn.init.normal_(model.deformation.torso_net[-1].weight, std=0.02)
        frames = [conditioning(1), conditioning(2)]
        got = stage_displacements(model, frames, points=200, seed=3, min_density=-1.0)
        # the same points the probe drew (its own generator), then the reference frame by frame
        gen = torch.Generator().manual_seed(3)
        low, high = torch.tensor(model.config.field.box_min), torch.tensor(model.config.field.box_max)
        points = (low + (high - low) * torch.rand(200 * 15, 3, generator=gen))[:200]
        expected = np.mean([reference(model, c, points) for c in frames], 0) * 100
    figures = [got[k] for k in ("face_stage_head_cm", "torso_stage_head_cm", "face_stage_body_cm", "torso_stage_body_cm")]
    np.testing.assert_allclose(figures, expected, atol=0.011)  # rounded to 0.01 cm
    assert got["head_points"] + got["body_points"] == 200 and got["frames"] == 2
    assert min(figures) > 0


def test_a_global_deformation_has_no_stages_to_probe():
    from lokitalk.model.deformation import DeformationConfig

    model = TalkingHead(ModelConfig(deformation=DeformationConfig(kind="global")))
    assert stage_displacements(model, [conditioning(0)], points=50, min_density=-1.0) is None


def test_a_region_model_with_nothing_occupied_is_measured_as_empty_not_as_global():
    # a model of a few steps: no canonical density above the threshold anywhere
    model = TalkingHead(ModelConfig())
    figures = stage_displacements(model, [conditioning(0)], points=50, min_density=1e9)
    assert figures is not None and figures["head_points"] == figures["body_points"] == 0
    assert figures["face_stage_head_cm"] is None and figures["torso_stage_body_cm"] is None


def test_a_fine_tuned_prior_model_is_probed_with_its_own_identity():
    from test_identity import micro_prior_config

    torch.manual_seed(0)
    model = TalkingHead(micro_prior_config())
    model.identity.set_lip_map(np.random.default_rng(0).normal(size=(16, 6)), np.zeros(6))
    with torch.no_grad():
        fresh = stage_displacements(model, [conditioning(0)], points=100, min_density=-1.0)
        assert fresh["face_stage_head_cm"] == fresh["face_stage_body_cm"] == 0.0
        torch.nn.init.normal_(model.deformation.face_out.weight, std=0.02)
        moved = stage_displacements(model, [conditioning(0)], points=100, min_density=-1.0)
        # the identity's generated layer changes what the face stage does: a different identity code, other figures
        model.identity.dynamic.add_(1.0)
        other = stage_displacements(model, [conditioning(0)], points=100, min_density=-1.0)
    assert moved["face_stage_head_cm"] > 0 and other["face_stage_head_cm"] != moved["face_stage_head_cm"]

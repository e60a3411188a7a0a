"""The torso stage's camera-rigid path (lokitalk.model.rigid, `torso_motion="rigid"`)."""

import json

import numpy as np
import pytest
import torch

from lokitalk.model.deformation import DeformationConfig, build_deformation
from lokitalk.model.field import pose_vector
from lokitalk.model.rigid import camera_rigid_offset, mean_pose, rotation_from_vector, rotation_from_vector_reference


def _random_rotations(n: int, scale: float, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def test_rodrigues_matches_the_matrix_exponential_at_every_angle_size():
    vectors = torch.cat([_random_rotations(50, 0.5), _random_rotations(10, 1e-6, seed=1), torch.zeros(1, 3),
                         _random_rotations(5, 2.0, seed=2)])
    fast = rotation_from_vector(vectors)
    torch.testing.assert_close(fast, rotation_from_vector_reference(vectors), atol=1e-12, rtol=0)
    eye = torch.eye(3, dtype=torch.float64).expand_as(fast)
    torch.testing.assert_close(fast @ fast.transpose(1, 2), eye, atol=1e-12, rtol=0)


def test_a_pose_vector_turns_back_into_its_rotation():
    for vector in _random_rotations(20, 0.3, seed=3):
        rotation = rotation_from_vector(vector[None])[0].float()
        recovered = rotation_from_vector(pose_vector(rotation, torch.zeros(3))[None, :3])[0]
        torch.testing.assert_close(recovered, rotation, atol=2e-6, rtol=0)


def _camera_static_points(reference: tuple[float, ...]):
    """Two frames' poses and where three points fixed in front of the camera appear in each
    frame's head frame, with where they sit under the reference pose."""
    in_camera = torch.tensor([[0.0, 0.15, 0.6], [0.1, 0.2, 0.55], [-0.12, 0.25, 0.62]], dtype=torch.float64)
    poses = torch.tensor([[0.10, -0.05, 0.02, 0.01, 0.0, 0.58], [-0.04, 0.12, -0.03, -0.02, 0.01, 0.61]],
                         dtype=torch.float64)
    ref = torch.tensor(reference, dtype=torch.float64)
    ref_rotation = rotation_from_vector(ref[None, :3])[0]
    expected = (in_camera - ref[3:]) @ ref_rotation  # R_ref^T (p - t_ref), row vectors
    head_points = []
    for pose in poses:
        rotation = rotation_from_vector(pose[None, :3])[0]
        head_points.append((in_camera - pose[3:]) @ rotation)  # R^T (p - t)
    return poses, head_points, ref, expected


def test_a_body_still_in_front_of_the_camera_maps_to_one_canonical_point_whatever_the_head_pose():
    poses, head_points, ref, expected = _camera_static_points((0.02, 0.03, -0.01, 0.0, 0.005, 0.6))
    for pose, x in zip(poses, head_points):
        moved = x + camera_rigid_offset(x, pose[None], ref)
        torch.testing.assert_close(moved, expected, atol=1e-12, rtol=0)
    # one pose row per point gives the same as one row for all
    x = head_points[0]
    torch.testing.assert_close(camera_rigid_offset(x, poses[0].expand(len(x), -1), ref),
                               camera_rigid_offset(x, poses[0][None], ref), atol=1e-12, rtol=0)
    # under the reference pose itself nothing moves
    torch.testing.assert_close(camera_rigid_offset(x, ref[None], ref), torch.zeros(3, 3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_the_mean_pose_of_symmetric_turns_is_no_turn_and_of_one_pose_that_pose():
    turn = rotation_from_vector(torch.tensor([[0.0, 0.2, 0.0], [0.0, -0.2, 0.0]], dtype=torch.float64)).numpy()
    pose = mean_pose(turn, np.array([[0.0, 0.0, 0.5], [0.0, 0.02, 0.7]]))
    np.testing.assert_allclose(pose, [0, 0, 0, 0, 0.01, 0.6], atol=1e-12)
    vector = np.array([0.05, -0.1, 0.2])
    single = rotation_from_vector(torch.tensor(vector)[None]).numpy().repeat(4, 0)
    np.testing.assert_allclose(mean_pose(single, np.full((4, 3), 0.3))[:3], vector, atol=1e-9)


def test_a_rigid_torso_stage_moves_its_attended_points_with_the_body_and_leaves_the_rest():
    """With the torso attention 1 the stage is the camera-rigid map (its net and the face stage start
    at zero); with it 0 the point stays where the head frame has it."""
    reference = (0.02, 0.03, -0.01, 0.0, 0.005, 0.6)
    net = build_deformation(DeformationConfig(torso_motion="rigid", reference_pose=reference)).double()
    poses, head_points, ref, expected = _camera_static_points(reference)
    lip, eye = torch.zeros(1, 16, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    for bias, target in ((40.0, expected), (-40.0, None)):
        torch.nn.init.constant_(net.torso_attention[-1].bias, bias)
        torch.nn.init.zeros_(net.torso_attention[-1].weight)
        for pose, x in zip(poses, head_points):
            out = net(x, lip, eye, pose[None])
            torch.testing.assert_close(out.canonical, x if target is None else target, atol=1e-6, rtol=0)


def test_a_body_frame_torso_attention_reads_where_the_rigid_map_puts_the_point():
    """`head+body`: the attention's second half reads the point's body-frame position. With its
    head-frame half silenced, a point held still in front of the camera gets one attention from
    every head pose; the head-only attention of the same point changes with the pose."""
    reference = (0.02, 0.03, -0.01, 0.0, 0.005, 0.6)
    torch.manual_seed(0)
    both = build_deformation(DeformationConfig(torso_motion="rigid", reference_pose=reference,
                                               torso_attention_frame="head+body")).double()
    head = build_deformation(DeformationConfig(torso_motion="rigid", reference_pose=reference)).double()
    pe = both.position.output_dim
    with torch.no_grad():
        both.torso_attention[0].weight[:, :pe] = 0.0  # the head-frame half reads nothing
        head.torso_attention[0].weight.copy_(both.torso_attention[0].weight[:, pe:])
        head.torso_attention[0].bias.copy_(both.torso_attention[0].bias)
        head.torso_attention[-1].load_state_dict(both.torso_attention[-1].state_dict())
    poses, head_points, ref, expected = _camera_static_points(reference)
    lip, eye = torch.zeros(1, 16, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    seen = [both(x, lip, eye, pose[None]).attention["torso"] for pose, x in zip(poses, head_points)]
    torch.testing.assert_close(seen[0], seen[1], atol=1e-9, rtol=0)
    # and it is the head-only attention evaluated at the body-frame point
    torch.testing.assert_close(seen[0], head(expected, lip, eye, ref[None]).attention["torso"], atol=1e-7, rtol=0)
    head_only = [head(x, lip, eye, pose[None]).attention["torso"] for pose, x in zip(poses, head_points)]
    assert (head_only[0] - head_only[1]).abs().max() > 1e-4


def test_a_rigid_torso_needs_its_reference_pose_and_a_region_model():
    with pytest.raises(ValueError, match="reference_pose"):
        build_deformation(DeformationConfig(torso_motion="rigid"))
    with pytest.raises(ValueError, match="torso_motion"):
        build_deformation(DeformationConfig(torso_motion="elastic"))
    with pytest.raises(ValueError, match="global"):
        build_deformation(DeformationConfig(kind="global", torso_motion="rigid", reference_pose=(0.0,) * 6))
    with pytest.raises(ValueError, match="torso_attention_frame"):
        build_deformation(DeformationConfig(torso_motion="rigid", reference_pose=(0.0,) * 6,
                                            torso_attention_frame="body"))
    with pytest.raises(ValueError, match="needs torso_motion 'rigid'"):
        build_deformation(DeformationConfig(torso_attention_frame="head+body"))


def test_build_model_sets_the_training_frames_mean_pose_and_the_config_round_trips(tmp_path):
    from dataclasses import replace

    from lokitalk.train.checkpoint import model_config_from_dict, model_config_to_dict
    from lokitalk.train.config import preset
    from lokitalk.train.trainer import build_model

    config = preset("tiny")
    config = replace(config, model=replace(config.model, deformation=replace(config.model.deformation,
                                                                             torso_motion="rigid")))
    rng = np.random.default_rng(0)
    rotations = rotation_from_vector(torch.tensor(rng.normal(0, 0.05, (30, 3)))).numpy()
    translations = rng.normal([0, 0, 0.6], 0.01, (30, 3))
    model = build_model(config, 0.01 * rng.standard_normal((30, 8)), 0.25 + 0.01 * rng.standard_normal((30, 2)),
                        torch.device("cpu"), poses=(rotations, translations))
    deformation = model.config.deformation
    assert deformation.reference_pose == pytest.approx(mean_pose(rotations, translations), abs=1e-12)
    np.testing.assert_allclose(deformation.reference_pose[3:], translations.mean(0), atol=1e-12)
    saved = json.loads(json.dumps(model_config_to_dict(model.config)))
    assert model_config_from_dict(saved) == model.config


def test_the_rigid_map_keeps_float32_under_bfloat16_autocast():
    """In bfloat16 the map would be off by ~1 mm (half a pixel at 256 px); autocast must not reach it."""
    x = torch.rand(500, 3) * 0.4 - 0.2
    pose = torch.tensor([[0.1, -0.05, 0.03, 0.01, 0.02, 0.63]])
    reference = torch.tensor([0.0, 0.02, 0.0, 0.0, 0.0, 0.6])
    plain = camera_rigid_offset(x, pose, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = camera_rigid_offset(x, pose.bfloat16(), reference)
    assert under_autocast.dtype == torch.float32
    # the pose row itself was handed over in bfloat16 (rounded), so compare with that pose
    torch.testing.assert_close(under_autocast, camera_rigid_offset(x, pose.bfloat16().float(), reference),
                               atol=1e-7, rtol=0)
    assert (under_autocast - plain).abs().max() < 5e-3  # only the pose's own rounding

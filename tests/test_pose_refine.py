"""Per-frame pose corrections (lokitalk.train.pose_refine): the ray maths against the slow
reference, the knots, the gauge, sparse updates, and that refining a wrong pose recovers the right one."""

import numpy as np
import pytest
import torch

from lokitalk.data.rays import pixel_rays
from lokitalk.model.renderer import RenderConfig, render_rays
from lokitalk.model.rigid import rotation_from_vector
from lokitalk.train.pose_refine import TRANSLATION_UNIT_M, FramePoseCorrections, corrected_rays_reference

FOCAL, CX, CY = 200.0, 32.0, 32.0


def _one_frame_batch(rotation: np.ndarray, translation: np.ndarray, frame: int, xs: np.ndarray, ys: np.ndarray):
    origins, directions = pixel_rays(rotation, translation, FOCAL, CX, CY, xs, ys)
    return {"origins": torch.from_numpy(origins).double(), "directions": torch.from_numpy(directions).double(),
            "rotation": torch.from_numpy(rotation).double(), "translation": torch.from_numpy(translation).double(),
            "frame": torch.tensor(frame)}


def _pose(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotation = rotation_from_vector(torch.tensor(rng.normal(0, 0.2, (1, 3)))).numpy()[0]
    return rotation, np.array([0.01, -0.02, 0.6]) + rng.normal(0, 0.01, 3)


def test_corrected_rays_match_rays_recomputed_from_the_corrected_pose():
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 64, 50), rng.integers(0, 64, 50)
    corrections = FramePoseCorrections(30, np.arange(30), knot_frames=1).double()
    with torch.no_grad():
        corrections.table.weight.copy_(torch.from_numpy(rng.normal(0, 0.05, (corrections.table.num_embeddings, 6))))
    for frame in (0, 7, 29):
        rotation, translation = _pose(frame)
        out = corrections(_one_frame_batch(rotation, translation, frame, xs, ys))
        stored = corrections.table.weight[frame].detach().numpy()
        origins, directions = corrected_rays_reference(rotation, translation, stored, FOCAL, CX, CY, xs, ys)
        np.testing.assert_allclose(out["origins"].detach().numpy(), origins, atol=1e-12)
        np.testing.assert_allclose(out["directions"].detach().numpy(), directions, atol=1e-12)
        # and the pose the deformation reads is the corrected one: it maps the new rays' origin to the camera centre
        centre = out["rotation"].detach().numpy() @ origins[0] + out["translation"].detach().numpy()
        np.testing.assert_allclose(centre, 0.0, atol=1e-12)


def test_zero_corrections_change_nothing_and_knots_interpolate_linearly():
    rotation, translation = _pose(1)
    xs, ys = np.arange(10), np.arange(10)
    batch = _one_frame_batch(rotation, translation, 5, xs, ys)
    corrections = FramePoseCorrections(40, np.arange(36), knot_frames=4).double()
    out = corrections(batch)
    for key in ("origins", "directions", "rotation", "translation"):
        torch.testing.assert_close(out[key], batch[key], atol=1e-15, rtol=0)
    with torch.no_grad():
        corrections.table.weight.copy_(torch.randn_like(corrections.table.weight))
    knots = corrections.table.weight.detach()
    torch.testing.assert_close(corrections.rows([8])[0], knots[2])  # frame 8 sits on knot 2
    torch.testing.assert_close(corrections.rows([9])[0], 0.75 * knots[2] + 0.25 * knots[3])
    torch.testing.assert_close(corrections.rows([39])[0], 0.25 * knots[9] + 0.75 * knots[10])  # the last frame
    with pytest.raises(ValueError, match="knot_frames"):
        FramePoseCorrections(10, np.arange(10), knot_frames=0)


def test_recentring_zeroes_the_training_frames_mean_and_keeps_their_differences():
    training = np.arange(0, 27)
    corrections = FramePoseCorrections(30, training, knot_frames=3).double()
    with torch.no_grad():
        corrections.table.weight.copy_(torch.randn_like(corrections.table.weight) + 0.3)
    before = corrections.rows(training)
    corrections.recentre()
    after = corrections.rows(training)
    torch.testing.assert_close(after.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(after - after[0], before - before[0], atol=1e-12, rtol=0)


def test_a_step_moves_only_the_knots_of_the_frame_it_drew():
    corrections = FramePoseCorrections(40, np.arange(40), knot_frames=4)
    optimizer = torch.optim.SparseAdam(list(corrections.parameters()), lr=1e-2)
    rotation, translation = _pose(2)
    for _ in range(3):  # later steps on one frame must not move others by momentum either
        batch = corrections({k: v.float() if v.is_floating_point() else v
                             for k, v in _one_frame_batch(rotation, translation, 13, np.arange(5), np.arange(5)).items()})
        optimizer.zero_grad()
        (batch["origins"].sum() + batch["directions"].sum()).backward()
        optimizer.step()
    moved = (corrections.table.weight.detach().abs().sum(1) > 0).nonzero().flatten().tolist()
    assert moved == [3, 4]  # frame 13 lies between knots 3 (frame 12) and 4 (frame 16)


def _textured_ball(points: torch.Tensor, ray_index: torch.Tensor):
    """A ball of radius 8 cm at the head frame's origin with a soft edge (a hard one makes the loss a
    staircase in the pose), coloured by position (so turns show)."""
    density = 300.0 * torch.sigmoid((0.08 - points.norm(dim=-1)) / 0.004)
    rgb = 0.5 + 0.5 * torch.sin(points * torch.tensor([25.0, 20.0, 15.0], dtype=points.dtype) + 0.3)
    return density, rgb


def test_refining_a_mistracked_pose_recovers_the_true_one():
    """Images rendered at the true pose; the tracked pose is off by 3 degrees and 4 mm. Fitting the
    frame's correction to the pixels brings the corrected pose back to the true one."""
    rotation, translation = _pose(3)
    true_correction = np.array([0.03, -0.04, 0.02, 0.004 / TRANSLATION_UNIT_M, -0.003 / TRANSLATION_UNIT_M, 0.0])
    turn = rotation_from_vector(torch.tensor(true_correction[None, :3]))[0].numpy()
    true_rotation = rotation @ turn
    true_translation = translation + rotation @ (true_correction[3:] * TRANSLATION_UNIT_M)
    ys, xs = np.mgrid[8:56:2, 8:56:2]
    xs, ys = xs.ravel(), ys.ravel()
    config = RenderConfig(samples_per_ray=64, near=0.45, far=0.75)
    true_rays = _one_frame_batch(true_rotation, true_translation, 0, xs, ys)
    background = torch.zeros(len(xs), 3, dtype=torch.float64)
    target = render_rays(_textured_ball, true_rays["origins"], true_rays["directions"], background, config).rgb

    corrections = FramePoseCorrections(1, np.arange(1)).double()
    optimizer = torch.optim.SparseAdam(list(corrections.parameters()), lr=3e-3)
    tracked = _one_frame_batch(rotation, translation, 0, xs, ys)
    for _ in range(200):
        batch = corrections(tracked)
        loss = ((render_rays(_textured_ball, batch["origins"], batch["directions"], background, config).rgb
                 - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    found = corrections.table.weight[0].detach().numpy()
    assert np.degrees(np.abs(found[:3] - true_correction[:3])).max() < 0.1  # from 3 degrees off
    assert np.abs(found[3:] - true_correction[3:]).max() * TRANSLATION_UNIT_M < 5e-4  # from 4 mm off


def _poses(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotations = rotation_from_vector(torch.tensor(rng.normal(0, 0.15, (count, 3)))).numpy()
    return rotations, np.array([0.0, 0.0, 0.6]) + rng.normal(0, 0.01, (count, 3))


def test_the_calibration_fit_recovers_an_affine_map_of_the_pose():
    from lokitalk.model.pose_calibration import pose_features
    from lokitalk.train.pose_refine import fit_pose_calibration

    rotations, translations = _poses(200, 4)
    truth = np.random.default_rng(5).normal(0, 0.05, (7, 6))
    features = np.stack([pose_features(torch.from_numpy(r), torch.from_numpy(t)).numpy()
                         for r, t in zip(rotations, translations)])
    found = fit_pose_calibration(rotations, translations, features @ truth, ridge=1e-9)
    np.testing.assert_allclose(features @ found, features @ truth, atol=1e-8)
    # with a strong ridge only the constant survives: the corrections' mean
    flat = fit_pose_calibration(rotations, translations, features @ truth, ridge=1e6)
    np.testing.assert_allclose(features @ flat, np.broadcast_to((features @ truth).mean(0), (200, 6)), atol=2e-3)


def test_rendering_applies_the_models_pose_correction_to_every_frame():
    """A model with a calibration renders a frame as the same model without one renders that frame
    at the corrected pose; with zero weights nothing changes."""
    from dataclasses import replace

    from lokitalk.model.deformation import DeformationConfig
    from lokitalk.model.encoding import TriPlaneConfig
    from lokitalk.model.field import FieldConfig, ModelConfig, TalkingHead
    from lokitalk.model.pose_calibration import corrected_pose, pose_features
    from lokitalk.render.frames import render_frame

    from types import SimpleNamespace

    from lokitalk.data.avatar import Camera

    avatar = SimpleNamespace(camera=Camera(focal_px=60.0, cx=12.0, cy=12.0, width=24, height=24))  # all render_frame reads
    config = ModelConfig(FieldConfig(grid=TriPlaneConfig(levels=2, base_resolution=8, max_resolution=16), hidden=8),
                         DeformationConfig(hidden=8, signal_dim=4))
    torch.manual_seed(0)
    plain = TalkingHead(config)
    calibrated = TalkingHead(replace(config, pose_calibration=True))
    calibrated.load_state_dict({**plain.state_dict(), "pose_calibration": torch.zeros(7, 6, dtype=torch.float64)})
    rotations, translations = _poses(1, 6)
    frame = {"lip_feature": torch.zeros(16), "eye_ratio": torch.tensor([0.3, 0.3]),
             "rotation": torch.from_numpy(rotations[0]).float(), "translation": torch.from_numpy(translations[0]).float()}
    background = np.zeros((24, 24, 3), np.uint8)
    render = lambda model, cond: render_frame(model, avatar, cond, None, RenderConfig(samples_per_ray=8), background)  # noqa: E731
    np.testing.assert_array_equal(render(calibrated, frame), render(plain, frame))
    weights = torch.from_numpy(np.random.default_rng(7).normal(0, 0.05, (7, 6)))
    with torch.no_grad():
        calibrated.pose_calibration.copy_(weights)
    row = pose_features(frame["rotation"].double(), frame["translation"].double()) @ weights
    rotation, translation = corrected_pose(frame["rotation"].double(), frame["translation"].double(), row)
    moved = dict(frame, rotation=rotation.float(), translation=translation.float())
    assert np.abs(render(plain, moved).astype(int) - render(plain, frame).astype(int)).max() > 0
    np.testing.assert_array_equal(render(calibrated, frame), render(plain, moved))


def test_corrections_keep_float32_under_bfloat16_autocast():
    """The LPIPS patch step applies corrections inside autocast: in bfloat16 a ray origin 0.6 m
    away would be off by millimetres."""
    rotation, translation = _pose(8)
    batch = {k: v.float() if v.is_floating_point() else v
             for k, v in _one_frame_batch(rotation, translation, 3, np.arange(20), np.arange(20)).items()}
    corrections = FramePoseCorrections(10, np.arange(10), knot_frames=2)
    with torch.no_grad():
        corrections.table.weight.copy_(torch.randn_like(corrections.table.weight) * 0.05)
    plain = corrections(batch)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = corrections(batch)
    for key in ("origins", "directions", "rotation", "translation"):
        assert inside[key].dtype == torch.float32
        torch.testing.assert_close(inside[key], plain[key], atol=1e-7, rtol=0)

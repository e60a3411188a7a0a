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

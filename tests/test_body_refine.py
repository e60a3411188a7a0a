"""Per-frame body corrections (lokitalk.train.body_refine, model.rigid's `body`): the map against a
slow 4x4 reference, refining a moved body recovers the move, and a body-refining run learns
centred corrections, resumes them and renders without them."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from lokitalk.errors import InputError
from lokitalk.model.deformation import DeformationConfig, build_deformation
from lokitalk.model.renderer import RenderConfig, render_rays
from lokitalk.model.rigid import camera_rigid_offset, rotation_from_vector
from lokitalk.train.body_refine import FrameBodyCorrections
from lokitalk.train.pose_refine import TRANSLATION_UNIT_M


def _rotation(vector) -> np.ndarray:
    return rotation_from_vector(torch.tensor(np.asarray(vector, np.float64)[None]))[0].numpy()


def _reference_body_map(x: np.ndarray, pose: np.ndarray, reference: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Slow reference: 4x4 matrices, point by point: the body correction after the reference body frame."""
    head_to_camera, camera_to_reference, correction = np.eye(4), np.eye(4), np.eye(4)
    head_to_camera[:3, :3], head_to_camera[:3, 3] = _rotation(pose[:3]), pose[3:]
    camera_to_reference[:3, :3] = _rotation(reference[:3]).T
    camera_to_reference[:3, 3] = -_rotation(reference[:3]).T @ reference[3:]
    correction[:3, :3], correction[:3, 3] = _rotation(body[:3]), body[3:]
    chain = correction @ camera_to_reference @ head_to_camera
    return np.stack([(chain @ np.append(point, 1.0))[:3] - point for point in x])


def test_the_body_correction_follows_the_reference_body_frame_and_zero_changes_nothing():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 0.1, (20, 3)) + [0.0, 0.2, 0.0])
    pose = torch.tensor([0.08, -0.12, 0.03, 0.01, -0.02, 0.6], dtype=torch.float64)
    reference = torch.tensor([0.02, 0.05, -0.01, 0.0, 0.01, 0.62], dtype=torch.float64)
    body = torch.tensor([0.03, -0.02, 0.05, 0.004, -0.003, 0.002], dtype=torch.float64)
    fast = camera_rigid_offset(x, pose[None], reference, body[None])
    slow = _reference_body_map(x.numpy(), pose.numpy(), reference.numpy(), body.numpy())
    np.testing.assert_allclose(fast.numpy(), slow, atol=1e-12)
    # one pose row per point takes the same correction
    torch.testing.assert_close(camera_rigid_offset(x, pose.expand(len(x), -1), reference, body[None]), fast,
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(camera_rigid_offset(x, pose[None], reference, torch.zeros(1, 6, dtype=torch.float64)),
                               camera_rigid_offset(x, pose[None], reference), atol=0, rtol=0)
    assert (fast - camera_rigid_offset(x, pose[None], reference)).abs().max() > 1e-3


def test_only_a_rigid_torso_stage_takes_a_body_correction():
    body = torch.zeros(1, 6)
    x, signals = torch.zeros(4, 3), (torch.zeros(1, 16), torch.zeros(1, 2), torch.zeros(1, 6))
    for config in (DeformationConfig(kind="region", torso_motion="learned"), DeformationConfig(kind="global")):
        with pytest.raises(ValueError, match="body correction"):
            build_deformation(config)(x, *signals, body=body)
    rigid = build_deformation(DeformationConfig(torso_motion="rigid", reference_pose=(0.0,) * 5 + (0.6,)))
    assert rigid(x, *signals, body=body).canonical.shape == (4, 3)


def test_the_batch_gets_its_frames_correction_in_metres():
    corrections = FrameBodyCorrections(20, np.arange(20), knot_frames=4).double()
    with torch.no_grad():
        corrections.table.weight.copy_(torch.randn_like(corrections.table.weight) * 0.1)
    out = corrections({"frame": torch.tensor(6), "rgb": torch.zeros(2, 3)})
    row = 0.5 * corrections.table.weight[1] + 0.5 * corrections.table.weight[2]  # frame 6: halfway, knots 1 and 2
    torch.testing.assert_close(out["body_correction"][:3], row[:3])
    torch.testing.assert_close(out["body_correction"][3:], row[3:] * TRANSLATION_UNIT_M)
    assert "rgb" in out and "rotation" not in out  # the head's pose is not its business


def _textured_body(points: torch.Tensor) -> torch.Tensor:
    """A flattened, textured ellipsoid where a chest sits in the reference body frame (density, rgb)."""
    centre = torch.tensor([0.0, 0.22, 0.02], dtype=points.dtype)
    scaled = (points - centre) / torch.tensor([0.16, 0.08, 0.06], dtype=points.dtype)
    density = 300.0 * torch.sigmoid((1.0 - scaled.norm(dim=-1)) / 0.05)
    rgb = 0.5 + 0.5 * torch.sin(points * torch.tensor([40.0, 35.0, 20.0], dtype=points.dtype) + 0.3)
    return density, rgb


def test_refining_a_moved_body_recovers_the_move():
    """The frame's body sits 1 degree turned and 4 mm aside from where the rigid torso holds it; fitting
    the frame's body correction to the pixels finds that move (rays in the head frame at a turned
    head pose, every point given to the body)."""
    from lokitalk.data.rays import pixel_rays

    pose = np.array([0.06, -0.1, 0.02, 0.0, -0.05, 0.6])
    reference = torch.tensor([0.0, 0.0, 0.0, 0.0, -0.05, 0.6], dtype=torch.float64)
    true_body = torch.tensor([[0.0, 0.0, 0.017, 0.004, -0.002, 0.0]], dtype=torch.float64)
    ys, xs = np.mgrid[70:150:3, 10:118:3]
    origins, directions = (torch.from_numpy(a) for a in pixel_rays(_rotation(pose[:3]), pose[3:], 200.0, 64.0, 32.0,
                                                                     xs.ravel(), ys.ravel()))
    config = RenderConfig(samples_per_ray=96, near=0.45, far=0.8)
    background = torch.zeros(len(origins), 3, dtype=torch.float64)
    pose_row = torch.from_numpy(pose)[None]

    def field(body):
        return lambda p, _: _textured_body(p + camera_rigid_offset(p, pose_row, reference, body))

    target = render_rays(field(true_body), origins, directions, background, config).rgb
    corrections = FrameBodyCorrections(1, np.arange(1)).double()
    optimizer = torch.optim.SparseAdam(list(corrections.parameters()), lr=2e-3)
    start = ((render_rays(field(None), origins, directions, background, config).rgb - target) ** 2).mean()
    for _ in range(150):
        body = corrections({"frame": torch.tensor(0)})["body_correction"][None]
        loss = ((render_rays(field(body), origins, directions, background, config).rgb - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    found = corrections({"frame": torch.tensor(0)})["body_correction"].detach()
    assert loss.item() < 0.02 * start.item()
    assert np.degrees(float((found[:3] - true_body[0, :3]).abs().max())) < 0.15  # from 1 degree off
    assert float((found[3:] - true_body[0, 3:]).abs().max()) < 5e-4  # from 4 mm off


pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    from conftest import synthetic_avatar

    return synthetic_avatar(tmp_path_factory.mktemp("body"), 3.0, 96, 4)


def _rigid_micro_config(steps: int):
    from test_trainer import micro_config

    from lokitalk.train.config import with_torso_motion

    return replace(with_torso_motion(micro_config(steps), "rigid"), body_refinement=True, pose_start=0.25,
                   pose_lr=1e-2, pose_knot_frames=2, checkpoint_every=10)


def test_a_body_refining_run_learns_centred_corrections_resumes_them_and_renders_without_them(avatar, tmp_path):
    from safetensors.torch import load_file

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.render.loading import load_trained
    from lokitalk.train.trainer import train

    config = _rigid_micro_config(40)
    summary = train(avatar, tmp_path / "straight", config, device="cpu", show_progress=False)
    assert summary["body_corrections"]["translation_mm_max"] > 0.01
    train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False, stop_after=25)
    # resumed with the setting off: the run keeps the refinement it started with
    train(avatar, tmp_path / "killed", replace(config, body_refinement=False), device="cpu", show_progress=False,
          resume=True)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))["bodies.table.weight"]
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))["bodies.table.weight"]
    torch.testing.assert_close(resumed, straight, rtol=1e-3, atol=1e-6)
    assert json.loads((tmp_path / "killed" / "model.json").read_text())["train"]["body_refinement"]
    data = load_avatar(avatar)
    frames = training_frames(data, None)
    corrections = FrameBodyCorrections(len(data.rotation), frames, 2)
    corrections.load_state_dict({"table.weight": straight})
    rows = corrections.rows(frames).detach()
    assert rows.abs().max() > 1e-4
    torch.testing.assert_close(rows.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    # the rendered model has no body table: frames it renders keep the mean body
    trained = load_trained(tmp_path / "straight")
    assert not any("bodies" in name for name in trained.model.state_dict())


def test_body_refinement_without_a_rigid_torso_is_refused_before_training(avatar, tmp_path):
    from test_trainer import micro_config

    from lokitalk.train.trainer import train

    with pytest.raises(InputError, match="rigid torso"):
        train(avatar, tmp_path / "m", replace(micro_config(2), body_refinement=True), device="cpu", show_progress=False)
    assert not (tmp_path / "m" / "model.json").exists()

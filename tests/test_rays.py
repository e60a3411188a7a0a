import numpy as np
import torch
import pytest
from scipy.spatial.transform import Rotation

from lokitalk.data.rays import RayBatchConfig, RaySampler, frame_rays, pixel_rays, pixel_rays_reference
from lokitalk.face_model import load_face_template
from lokitalk.prepare.pose import project


def test_rays_match_the_reference_and_pass_through_projected_points(rng):
    rotation = Rotation.from_euler("yxz", [25, -10, 5], degrees=True).as_matrix()
    translation = np.array([0.02, -0.01, 0.6])
    focal, cx, cy = 500.0, 128.0, 128.0
    xs, ys = rng.integers(0, 256, 50), rng.integers(0, 256, 50)
    origins, dirs = pixel_rays(rotation, translation, focal, cx, cy, xs, ys)
    for k in range(5):
        o, d = pixel_rays_reference(rotation, translation, focal, cx, cy, int(xs[k]), int(ys[k]))
        np.testing.assert_allclose(origins[k], o, atol=1e-12)
        np.testing.assert_allclose(dirs[k], d, atol=1e-12)
    # a head point projects to pixel centre (x+0.5, y+0.5) of its pixel: its ray passes through it
    point = load_face_template().vertices[1].astype(np.float64)  # the nose tip
    uv = project(point[None], rotation[None], translation[None], focal, cx, cy)[0, 0]
    o, d = pixel_rays(rotation, translation, focal, cx, cy, np.array([uv[0] - 0.5]), np.array([uv[1] - 0.5]))
    distance = np.linalg.norm(np.cross(point - o[0], d[0]))
    assert distance < 1e-9


def test_whole_frame_rays_on_device_match_per_pixel_rays():
    import torch

    rotation = Rotation.from_euler("yxz", [-15, 8, -3], degrees=True).as_matrix()
    translation = np.array([-0.01, 0.03, 0.7])
    focal, cx, cy, width, height = 420.0, 61.0, 47.5, 120, 96
    origins, dirs = frame_rays(torch.from_numpy(rotation).float(), torch.from_numpy(translation).float(),
                               focal, cx, cy, width, height)
    ys, xs = np.mgrid[0:height, 0:width]
    ref_origins, ref_dirs = pixel_rays(rotation.astype(np.float32).astype(np.float64),
                                       translation.astype(np.float32).astype(np.float64), focal, cx, cy,
                                       xs.ravel(), ys.ravel())
    assert origins.shape == (width * height, 3) and origins.dtype == torch.float32
    np.testing.assert_allclose(origins.numpy(), ref_origins, atol=1e-6)
    np.testing.assert_allclose(dirs.numpy(), ref_dirs, atol=1e-6)


def test_sampler_batches_carry_their_frame_conditioning(tmp_path):
    pytest.importorskip("mediapipe")
    from conftest import synthetic_avatar
    from lokitalk.data.avatar import load_avatar

    avatar = load_avatar(synthetic_avatar(tmp_path, 3.0, 128, 2))
    sampler = RaySampler(avatar, RayBatchConfig(rays_per_batch=512, mouth_fraction=0.5, eye_fraction=0.25), seed=0)
    for _ in range(5):
        batch = sampler.sample()
        frame = int(batch["frame"])
        assert frame in set(avatar.split.train.tolist())  # test frames never leak into training
        np.testing.assert_allclose(batch["lip_feature"].numpy(), avatar.lip_feature[frame], rtol=1e-6)
        xs, ys = batch["pixels"][:, 0].numpy(), batch["pixels"][:, 1].numpy()
        np.testing.assert_allclose(batch["rgb"].numpy(), avatar.frame(frame)[ys, xs] / 255.0, atol=1e-6)
        assert (batch["labels"] == 5).float().mean() >= 0.45  # mouth rays as asked
        assert (batch["labels"] == 6).float().mean() >= 0.23  # and eye rays
        assert batch["origins"].shape == (512, 3)
        torch_norm = batch["directions"].norm(dim=-1)
        assert float((torch_norm - 1).abs().max()) < 1e-5
    patches = RaySampler(avatar, RayBatchConfig(patch_size=16), seed=1).sample()
    px = patches["pixels"].numpy().reshape(16, 16, 2)
    assert np.all(np.diff(px[..., 0], axis=1) == 1) and np.all(np.diff(px[..., 1], axis=0) == 1)
    # patches centred on the mouth: each contains mouth pixels, and their centres lie in the
    # mouth's bounding box widened by the shift that keeps a patch inside the frame
    mouth_patches = RaySampler(avatar, RayBatchConfig(patch_size=16, patch_regions=(5,)), seed=2)
    anywhere = RaySampler(avatar, RayBatchConfig(patch_size=16), seed=2)
    with_mouth = {"centred": 0, "anywhere": 0}
    for _ in range(20):
        for name, sampler in (("centred", mouth_patches), ("anywhere", anywhere)):
            patch = sampler.sample()
            with_mouth[name] += bool((patch["labels"] == 5).any())
            if name == "centred":
                labels = avatar.labels(int(patch["frame"]))
                ys, xs = np.nonzero(labels == 5)
                centre = patch["pixels"].numpy().reshape(16, 16, 2)[8, 8]
                assert xs.min() - 8 <= centre[0] <= xs.max() + 8 and ys.min() - 8 <= centre[1] <= ys.max() + 8
    assert with_mouth["centred"] == 20 and with_mouth["anywhere"] < 10


def test_blink_frames_match_a_per_frame_reference():
    from types import SimpleNamespace

    from lokitalk.data.avatar import blink_frames

    avatar = SimpleNamespace(num_frames=40, blinks=np.array([[0, 1], [10, 12], [38, 39]]))
    frames = np.arange(0, 36)  # the last blink lies in frames not given: it must not appear
    expected = [f for f in frames if any(a - 2 <= f <= b + 2 for a, b in avatar.blinks)]
    np.testing.assert_array_equal(blink_frames(avatar, frames, margin=2), expected)
    assert blink_frames(SimpleNamespace(num_frames=5, blinks=np.zeros((0, 2), int)), np.arange(5)).size == 0


def test_sampler_draws_blink_frames_at_least_as_often_as_asked_and_replays_without_them(tmp_path):
    pytest.importorskip("mediapipe")
    from dataclasses import replace

    from conftest import synthetic_avatar
    from lokitalk.data.avatar import load_avatar

    avatar = load_avatar(synthetic_avatar(tmp_path, 3.0, 128, 2))
    train = np.asarray(avatar.split.train)
    avatar = replace(avatar, blinks=np.array([[train[10], train[11]]]))  # 4 of the train frames with the margin
    in_blink = set(train[9:13].tolist())
    config = RayBatchConfig(rays_per_batch=8, mouth_fraction=0.0, blink_frame_fraction=0.5)
    sampler = RaySampler(avatar, config, seed=3)
    drawn = [sampler._draw_frame() for _ in range(2000)]
    share = np.mean([f in in_blink for f in drawn])
    assert abs(share - 0.5) < 0.04, share  # the floor, whatever the blinks' natural share
    assert set(drawn) <= set(train.tolist())
    # a floor below the blinks' natural share changes nothing
    natural = len(in_blink) / len(train)
    assert RaySampler(avatar, replace(config, blink_frame_fraction=natural * 0.9)).blink_draw_probability() == 0.0
    # off: exactly the frame sequence of a plain uniform draw, so older runs replay unchanged
    plain = RaySampler(avatar, replace(config, blink_frame_fraction=0.0), seed=3)
    reference = np.random.default_rng(3)
    assert [plain._draw_frame() for _ in range(50)] == [int(reference.choice(train)) for _ in range(50)]


def test_edge_strength_matches_a_per_pixel_sobel_reference(rng):
    from lokitalk.data.rays import edge_strength

    image = rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)
    strength = edge_strength(image)
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)  # the reference checks the filter, not this
    padded = np.pad(grey, 1, mode="reflect")  # OpenCV's default border (BORDER_REFLECT_101)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    magnitude = np.array([[np.hypot((padded[y:y + 3, x:x + 3] * kx).sum(), (padded[y:y + 3, x:x + 3] * kx.T).sum())
                           for x in range(11)] for y in range(9)])
    expected = magnitude + 0.01 * magnitude.mean() + 1e-6
    np.testing.assert_allclose(strength, expected, rtol=1e-5, atol=1e-3)


def test_edge_rays_land_on_edges_in_proportion_and_leave_other_draws_unchanged(tmp_path):
    pytest.importorskip("mediapipe")
    from dataclasses import replace

    from conftest import synthetic_avatar
    from lokitalk.data.avatar import load_avatar
    from lokitalk.data.rays import edge_strength

    avatar = load_avatar(synthetic_avatar(tmp_path, 3.0, 128, 2))
    frame = int(avatar.split.train[4])
    config = RayBatchConfig(rays_per_batch=4000, mouth_fraction=0.0, edge_fraction=0.5)
    batch = RaySampler(avatar, config, seed=5).sample(frame)
    rgb = avatar.frame(frame)
    weight = edge_strength(rgb)
    top = weight >= np.quantile(weight, 0.9)  # the strongest tenth of the pixels
    expected = weight[top].sum() / weight.sum()  # the share of edge draws that should land there
    xs, ys = batch["pixels"][:, 0].numpy(), batch["pixels"][:, 1].numpy()
    edge_draws, uniform_draws = top[ys[:2000], xs[:2000]].mean(), top[ys[2000:], xs[2000:]].mean()
    assert abs(edge_draws - expected) < 0.04, (edge_draws, expected)
    assert abs(uniform_draws - 0.1) < 0.04  # the other half stays uniform
    assert expected > 0.3  # the test means something: edges are concentrated
    np.testing.assert_allclose(batch["rgb"].numpy(), rgb[ys, xs] / 255.0, atol=1e-6)
    # off: the same rays as a sampler that never knew about edges
    off = RaySampler(avatar, replace(config, edge_fraction=0.0), seed=5).sample(frame)
    plain = RaySampler(avatar, RayBatchConfig(rays_per_batch=4000, mouth_fraction=0.0), seed=5).sample(frame)
    assert torch.equal(off["pixels"], plain["pixels"])


def test_sampler_carries_the_lower_face_region_only_when_asked(tmp_path):
    pytest.importorskip("mediapipe")
    from conftest import synthetic_avatar
    from lokitalk.data.avatar import load_avatar
    from lokitalk.face_model import load_face_template
    from lokitalk.prepare.masks import lower_face_mask

    avatar = load_avatar(synthetic_avatar(tmp_path, 3.0, 128, 2))
    frame = int(avatar.split.train[2])
    plain = RaySampler(avatar, RayBatchConfig(rays_per_batch=600, image_scale=0.5), seed=2).sample(frame)
    asked = RaySampler(avatar, RayBatchConfig(rays_per_batch=600, image_scale=0.5, speech_region=True), seed=2).sample(frame)
    assert "speech" not in plain and torch.equal(plain["pixels"], asked["pixels"])  # the same rays either way
    cam = avatar.camera.scaled(0.5)
    expected = lower_face_mask((cam.height, cam.width), avatar.landmarks[frame, :, :2] * 0.5, load_face_template())
    xs, ys = asked["pixels"][:, 0].numpy(), asked["pixels"][:, 1].numpy()
    np.testing.assert_array_equal(asked["speech"].numpy(), expected[ys, xs])
    assert asked["speech"][asked["labels"] == 5].all()  # every mouth ray is in it
    assert 0.03 < float(asked["speech"].float().mean()) < 0.5

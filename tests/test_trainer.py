"""Training on a tiny synthetic avatar: it learns, and a killed run resumes the same trajectory."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from lokitalk.errors import InputError
from lokitalk.model.deformation import DeformationConfig
from lokitalk.model.encoding import TriPlaneConfig
from lokitalk.model.field import FieldConfig, ModelConfig
from lokitalk.train.config import TrainConfig
from lokitalk.train.trainer import learning_rate_factors, train

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    from conftest import synthetic_avatar

    return synthetic_avatar(tmp_path_factory.mktemp("trainer"), 3.0, 96, 4)


def micro_config(steps=40):
    grid = TriPlaneConfig(levels=3, features_per_level=2, base_resolution=8, max_resolution=32)
    model = ModelConfig(FieldConfig(grid=grid, hidden=16), DeformationConfig(hidden=16, signal_dim=8))
    return TrainConfig(preset="micro", model=model, steps=steps, rays_per_batch=256, samples_per_ray=12,
                       checkpoint_every=20, log_every=5, occupancy_warmup=10, occupancy_every=10,
                       occupancy_resolution=16)


def read_log(path):
    with open(path) as handle:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]


def test_loss_falls(avatar, tmp_path):
    summary = train(avatar, tmp_path / "model", micro_config(60), device="cpu", show_progress=False)
    assert summary["finished"] and summary["steps"] == 60
    log = read_log(tmp_path / "model" / "train_log.csv")
    first = sum(loss for _, loss in log[:2]) / 2
    last = sum(loss for _, loss in log[-2:]) / 2
    assert last < 0.6 * first
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_a_killed_run_resumes_on_the_same_trajectory(avatar, tmp_path):
    pytest.importorskip("lokitalk.evaluate.lpips")
    # with the LPIPS patch loss on, so that its own random stream must be restored too
    config = replace(micro_config(40), lpips_weight=0.05, lpips_every=3, patch_size=32, lpips_start=0.25)
    train(avatar, tmp_path / "straight", config, device="cpu", show_progress=False)
    partial = train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False, stop_after=30)
    assert not partial["finished"] and partial["steps"] == 20  # work since the last checkpoint is lost
    with pytest.raises(InputError, match="--resume"):
        train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False)
    resumed = train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False, resume=True)
    assert resumed["finished"] and resumed["steps"] == 40
    straight = dict(read_log(tmp_path / "straight" / "train_log.csv"))
    after = [(s, loss) for s, loss in read_log(tmp_path / "killed" / "train_log.csv") if s > 20]
    assert [s for s, _ in after][-1] == 40
    for step, loss in after:
        assert loss == pytest.approx(straight[step], rel=1e-3, abs=1e-5)  # no spike: the same losses


def test_lpips_joins_at_its_start_on_face_centred_patches(avatar, tmp_path, monkeypatch):
    pytest.importorskip("lokitalk.evaluate.lpips")
    import lokitalk.train.trainer as trainer_module

    patches = []
    real_patch_lpips = trainer_module._patch_lpips

    def recording(model, sampler, *args):
        patches.append(sampler.config.patch_regions)
        return real_patch_lpips(model, sampler, *args)

    monkeypatch.setattr(trainer_module, "_patch_lpips", recording)
    config = replace(micro_config(40), lpips_weight=0.05, lpips_every=3, patch_size=32, lpips_start=0.5)
    train(avatar, tmp_path / "late", config, device="cpu", show_progress=False)
    assert len(patches) == len([s for s in range(20, 40) if s % 3 == 0])  # steps 21, 24, ... 39
    assert set(patches) == {(4, 5, 6)}  # face skin, mouth, eyes
    with pytest.raises(InputError, match="lpips_start"):
        train(avatar, tmp_path / "bad", replace(config, lpips_start=1.5), device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="lpips_patches"):
        train(avatar, tmp_path / "bad2", replace(config, lpips_patches="mouth"), device="cpu", show_progress=False)


def test_global_deformation_trains_too(avatar, tmp_path):
    config = micro_config(20)
    config = replace(config, model=replace(config.model, deformation=replace(config.model.deformation, kind="global")))
    assert train(avatar, tmp_path / "global", config, device="cpu", show_progress=False)["finished"]


def test_a_box_sampled_silu_model_learns_and_renders_as_it_was_trained(avatar, tmp_path):
    from lokitalk.render.loading import RENDER_TERMINATION, load_trained

    config = micro_config(60)
    config = replace(config, box_sampling=True,
                     model=replace(config.model, deformation=replace(config.model.deformation, activation="silu")))
    assert train(avatar, tmp_path / "box", config, device="cpu", show_progress=False)["finished"]
    losses = [loss for _, loss in read_log(tmp_path / "box" / "train_log.csv")]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    trained = load_trained(tmp_path / "box")
    assert trained.render_config.box_sampling and trained.render_config.termination == RENDER_TERMINATION
    assert trained.model.config.deformation.activation == "silu"
    # a model folder from before box sampling and SiLU (no such keys) renders with neither
    plain = micro_config(20)
    train(avatar, tmp_path / "old", plain, device="cpu", show_progress=False)
    meta_path = tmp_path / "old" / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["train"]["box_sampling"], meta["train"]["fine_samples"], meta["train"]["fine_with_coarse"]
    del meta["model"]["deformation"]["activation"]
    meta_path.write_text(json.dumps(meta))
    old = load_trained(tmp_path / "old")
    assert not old.render_config.box_sampling and old.model.config.deformation.activation == "relu"
    assert old.render_config.fine_samples == 0 and not old.render_config.fine_with_coarse


def test_a_model_trained_with_a_proposal_stage_learns_and_renders_with_it(avatar, tmp_path):
    from lokitalk.render.loading import load_trained

    config = replace(micro_config(60), fine_samples=8, fine_padding=0.3, fine_with_coarse=True)
    assert train(avatar, tmp_path / "fine", config, device="cpu", show_progress=False)["finished"]
    losses = [loss for _, loss in read_log(tmp_path / "fine" / "train_log.csv")]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    trained = load_trained(tmp_path / "fine")
    assert trained.render_config.fine_samples == 8 and trained.render_config.fine_padding == 0.3
    # the union's coarse samples are for training: rendering evaluates the fine ones alone
    assert trained.meta["train"]["fine_with_coarse"] and not trained.render_config.fine_with_coarse
    assert trained.render_config.samples_per_ray == config.samples_per_ray  # the coarse samples


def test_mixed_precision_trains_and_a_failing_compile_falls_back_to_eager(avatar, tmp_path, monkeypatch):
    import torch

    def broken_compile(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no compiler on this machine")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    config = replace(micro_config(40), amp="on", compile="on")
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        summary = train(avatar, tmp_path / "amp", config, device="cpu", show_progress=False)
    assert summary["finished"] and summary["amp"] is True
    assert summary["compiled"] is False and "no compiler" in summary["compile_fallback"]
    log = read_log(tmp_path / "amp" / "train_log.csv")
    assert all(loss == loss for _, loss in log)  # finite, no NaN under bf16
    assert log[-1][1] < log[0][1]


def test_acceleration_defaults_follow_the_device():
    import torch

    from lokitalk.train.accelerate import resolve

    cpu = resolve(torch.device("cpu"))
    assert not cpu.amp and not cpu.compile
    with pytest.raises(ValueError):
        resolve(torch.device("cpu"), amp="maybe")


def test_lip_input_unit_scales_the_feature_once_inside_the_model(avatar, tmp_path):
    """`lip_input="unit"`: the model multiplies the prepared lip feature by one factor, the inverse
    of its overall spread on the training frames; it is saved with the model, and a model with
    scale s on feature f renders exactly what the same weights at scale 1 render on s * f."""
    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.render.frames import frame_conditioning, render_frame
    from lokitalk.render.loading import load_trained
    from lokitalk.train.trainer import lip_input_scale

    prepared = load_avatar(avatar)
    feats = prepared.lip_feature[training_frames(prepared, None)].astype(np.float64)
    scale = lip_input_scale(feats, "unit")
    assert ((feats * scale).var(axis=0).sum()) == pytest.approx(1.0, rel=1e-9)
    assert lip_input_scale(feats, "raw") == 1.0
    with pytest.raises(InputError, match="raw or unit"):
        lip_input_scale(feats, "whiten")

    train(avatar, tmp_path / "m", replace(micro_config(6), lip_input="unit"), device="cpu", show_progress=False)
    trained = load_trained(tmp_path / "m")
    assert trained.model.config.deformation.lip_scale == pytest.approx(scale, rel=1e-6)
    assert scale > 5.0  # a prepared lip feature spreads far less than 1: the factor is not a no-op

    cond = frame_conditioning(prepared, 3)
    cond["lip_feature"] = cond["lip_feature"] + 0.02  # away from the mean, so that the lips matter
    background = np.zeros((prepared.camera.height, prepared.camera.width, 3), np.uint8)
    scaled = render_frame(trained.model, prepared, cond, None, trained.render_config, background)
    trained.model.config = replace(trained.model.config,
                                   deformation=replace(trained.model.config.deformation, lip_scale=1.0))
    by_hand = render_frame(trained.model, prepared, dict(cond, lip_feature=cond["lip_feature"] * scale), None,
                           trained.render_config, background)
    unscaled = render_frame(trained.model, prepared, cond, None, trained.render_config, background)
    np.testing.assert_array_equal(scaled, by_hand)
    assert np.abs(scaled.astype(int) - unscaled.astype(int)).max() > 0  # the factor reaches the render


def test_a_resumed_run_keeps_the_lip_input_it_started_with(avatar, tmp_path):
    """A folder started with raw lip input (e.g. before unit became the default) resumes raw: its
    weights were learned on the unscaled feature."""
    from lokitalk.render.loading import load_trained

    train(avatar, tmp_path / "m", replace(micro_config(4), lip_input="raw", checkpoint_every=2), device="cpu",
          show_progress=False, stop_after=2)
    train(avatar, tmp_path / "m", replace(micro_config(4), checkpoint_every=2), device="cpu", show_progress=False,
          resume=True)
    trained = load_trained(tmp_path / "m")
    assert trained.model.config.deformation.lip_scale == 1.0
    assert json.loads((tmp_path / "m" / "model.json").read_text())["train"]["lip_input"] == "raw"


def test_a_rigid_torso_run_learns_and_resumes_rigid_whatever_the_config_says(avatar, tmp_path):
    """A rigid torso stage trains (loss falls), records its reference pose (the training frames'
    mean), and a resumed run keeps the torso motion it started with: its weights were learned on it."""
    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.model.rigid import mean_pose
    from lokitalk.render.loading import load_trained
    from lokitalk.train.config import with_torso_motion

    rigid = replace(with_torso_motion(micro_config(40), "rigid"), checkpoint_every=10)
    train(avatar, tmp_path / "m", rigid, device="cpu", show_progress=False, stop_after=20)
    train(avatar, tmp_path / "m", replace(rigid, model=micro_config().model), device="cpu", show_progress=False,
          resume=True)
    log = read_log(tmp_path / "m" / "train_log.csv")
    assert log[-1][0] == 40 and np.mean([x for _, x in log[-2:]]) < 0.8 * np.mean([x for _, x in log[:2]])
    deformation = load_trained(tmp_path / "m").model.config.deformation
    data = load_avatar(avatar)
    frames = training_frames(data, None)
    assert deformation.torso_motion == "rigid"
    assert deformation.reference_pose == pytest.approx(mean_pose(data.rotation[frames], data.translation[frames]),
                                                       abs=1e-9)


def test_an_unknown_neck_attention_is_refused_before_anything_is_written(avatar, tmp_path):
    with pytest.raises(InputError, match="neck_attention"):
        train(avatar, tmp_path / "m", replace(micro_config(2), neck_attention="loose"), device="cpu",
              show_progress=False)
    assert not (tmp_path / "m").exists()


def test_enough_video_gets_a_finer_deformation_encoding_and_a_resumed_run_keeps_its_own(avatar, tmp_path):
    """The synthetic clip has 2.7 s of training video: with fine_deformation_seconds at 2 s the
    model reads one more position band than the preset's 6; at 5 s, or None, it does not. A run
    started without the setting (an older folder) resumes with the encoding it was built with."""
    from lokitalk.render.loading import load_trained
    from lokitalk.train.trainer import position_frequencies

    assert [position_frequencies(replace(micro_config(), fine_deformation_seconds=t), 30.0)
            for t in (None, 30.0, 30.01)] == [6, 7, 6]
    train(avatar, tmp_path / "fine", replace(micro_config(4), fine_deformation_seconds=2.0), device="cpu",
          show_progress=False)
    train(avatar, tmp_path / "plain", replace(micro_config(4), fine_deformation_seconds=5.0), device="cpu",
          show_progress=False)
    assert load_trained(tmp_path / "fine").model.config.deformation.posenc_frequencies == 7
    assert load_trained(tmp_path / "fine").model.deformation.face_trunk[0].in_features == 3 + 6 * 7 + 8 + 8
    assert load_trained(tmp_path / "plain").model.config.deformation.posenc_frequencies == 6

    train(avatar, tmp_path / "old", replace(micro_config(4), fine_deformation_seconds=None, checkpoint_every=2),
          device="cpu", show_progress=False, stop_after=2)
    resumed = train(avatar, tmp_path / "old", replace(micro_config(4), fine_deformation_seconds=2.0, checkpoint_every=2),
                    device="cpu", show_progress=False, resume=True)
    assert resumed["finished"] and load_trained(tmp_path / "old").model.config.deformation.posenc_frequencies == 6


def test_eye_input_unit_centres_and_scales_the_eye_ratio_inside_the_model(avatar, tmp_path):
    """`eye_input="unit"`: the saved model centres the eye ratio on its training mean and divides
    by its spread; that renders exactly what the same weights render on the transformed input."""
    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.render.frames import frame_conditioning, render_frame
    from lokitalk.render.loading import load_trained
    from lokitalk.train.trainer import eye_input_transform

    prepared = load_avatar(avatar)
    eyes = prepared.eye_ratio[training_frames(prepared, None)].astype(np.float64)
    mean, scale = eye_input_transform(eyes, "unit")
    assert ((eyes - mean) * scale).mean() == pytest.approx(0.0, abs=1e-9)
    assert ((eyes - mean) * scale).std() == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(InputError, match="raw or unit"):
        eye_input_transform(eyes, "whiten")

    train(avatar, tmp_path / "m", replace(micro_config(4), eye_input="unit"), device="cpu", show_progress=False)
    trained = load_trained(tmp_path / "m")
    deform = trained.model.config.deformation
    assert (deform.eye_mean, deform.eye_scale) == pytest.approx((mean, scale), rel=1e-6)
    cond = frame_conditioning(prepared, 5)
    background = np.zeros((prepared.camera.height, prepared.camera.width, 3), np.uint8)
    inside = render_frame(trained.model, prepared, cond, None, trained.render_config, background)
    trained.model.config = replace(trained.model.config, deformation=replace(deform, eye_mean=0.0, eye_scale=1.0))
    by_hand = render_frame(trained.model, prepared, dict(cond, eye_ratio=(cond["eye_ratio"] - mean) * scale), None,
                           trained.render_config, background)
    np.testing.assert_array_equal(inside, by_hand)


def test_deformation_warmup_shrinks_only_the_deformation_nets_first_steps(avatar, tmp_path):
    """Adam's first step moves each weight by its learning rate whatever the gradient's size, so a
    warm-up of W steps must move the deformation nets exactly 1/W as far at step 1, and nothing else
    differently. Three runs (no warm-up, 2, 4) give that without knowing the initial weights:
    p0 - p2 = d/2 and p2 - p4 = d/4."""
    from safetensors.torch import load_file

    weights = {}
    for warmup in (0, 2, 4):
        config = replace(micro_config(8), checkpoint_every=1, deformation_warmup=warmup)
        train(avatar, tmp_path / f"w{warmup}", config, device="cpu", show_progress=False, stop_after=1)
        weights[warmup] = load_file(str(tmp_path / f"w{warmup}" / "checkpoint.safetensors"))
    deforming = [k for k in weights[0] if k.startswith("model.deformation.")]
    assert deforming and len(deforming) < len([k for k in weights[0] if k.startswith("model.")])
    moved = 0
    for key in weights[0]:
        first, second = weights[0][key] - weights[2][key], weights[2][key] - weights[4][key]
        if key in deforming:
            torch.testing.assert_close(first, 2 * second, rtol=1e-4, atol=1e-7)
            moved += int((first.abs() > 1e-4).sum())
        else:
            torch.testing.assert_close(weights[0][key], weights[4][key], rtol=0, atol=0)
    assert moved > 0  # the deformation nets did learn on the first step, just less


def test_deformation_warmup_ramps_linearly_then_follows_the_decay():
    config = replace(micro_config(100), deformation_warmup=10, lr_final_fraction=0.5)
    shared, nets, deformation = learning_rate_factors(config)
    decay = 0.5 ** (1 / 100)
    for step in (0, 4, 9, 10, 50, 99):
        assert shared(step) == nets(step) == pytest.approx(decay**step)
        assert deformation(step) == pytest.approx(decay**step * min(1.0, (step + 1) / 10))
    assert len(learning_rate_factors(replace(config, deformation_warmup=0))) == 2
    with pytest.raises(InputError, match="deformation_warmup"):
        learning_rate_factors(replace(config, deformation_warmup=-1))


@pytest.mark.parametrize("name, unit", [("tiny", False), ("fast", True), ("full", True)])
def test_fast_and_full_feed_the_eye_ratio_at_unit_scale_and_tiny_as_prepared(name, unit):
    """The presets' eye input reaches the model they build: `fast`/`full` centre and scale the
    training eye ratios (the 16 s clip's blink fix), `tiny` passes them through."""
    from lokitalk.train.config import preset
    from lokitalk.train.trainer import build_model

    rng = np.random.default_rng(0)
    eyes = 0.25 + 0.03 * rng.standard_normal((40, 2))
    lips = 0.01 * rng.standard_normal((40, 8))
    poses = (np.repeat(np.eye(3)[None], 40, 0), np.tile([0.0, 0.0, 0.6], (40, 1)))
    deform = build_model(preset(name), lips, eyes, torch.device("cpu"), poses=poses).config.deformation
    expected = (eyes.mean(), 1.0 / eyes.std()) if unit else (0.0, 1.0)
    assert (deform.eye_mean, deform.eye_scale) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name, deformation, motion", [("tiny", "region", "learned"), ("fast", "region", "rigid"),
                                                       ("full", "region", "rigid"), ("fast", "global", "learned")])
def test_fast_and_full_region_models_get_a_rigid_torso_with_the_training_frames_mean_pose(name, deformation, motion):
    from lokitalk.model.rigid import mean_pose, rotation_from_vector
    from lokitalk.train.config import preset
    from lokitalk.train.trainer import build_model

    rng = np.random.default_rng(1)
    rotations = rotation_from_vector(torch.tensor(rng.normal(0, 0.05, (40, 3)))).numpy()
    translations = rng.normal([0, 0, 0.6], 0.01, (40, 3))
    model = build_model(preset(name, deformation), 0.01 * rng.standard_normal((40, 8)),
                        0.25 + 0.03 * rng.standard_normal((40, 2)), torch.device("cpu"), poses=(rotations, translations))
    deform = model.config.deformation
    assert deform.torso_motion == motion
    expected = mean_pose(rotations, translations) if motion == "rigid" else ()
    assert deform.reference_pose == pytest.approx(expected, abs=1e-12)


def test_a_pose_refining_run_learns_centred_corrections_and_resumes_them(avatar, tmp_path):
    """Corrections move once `pose_start` has passed, keep a zero mean over the training frames
    (the common part is a gauge), are checkpointed with their optimizer and their calibration, and
    a killed run resumes them on the same trajectory."""
    from safetensors.torch import load_file

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.train.pose_refine import FramePoseCorrections

    config = replace(micro_config(40), pose_refinement=True, pose_start=0.25, pose_lr=1e-2, pose_knot_frames=2)
    summary = train(avatar, tmp_path / "straight", config, device="cpu", show_progress=False)
    assert summary["pose_corrections"]["rotation_deg_max"] > 0.01
    train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False, stop_after=30)
    # every checkpoint, not only the last, holds the calibration of the corrections it holds, so
    # a killed run's model renders unseen frames as the finished one would
    from lokitalk.train.pose_refine import fit_pose_calibration

    data = load_avatar(avatar)
    frames = training_frames(data, None)
    partial = load_file(str(tmp_path / "killed" / "checkpoint.safetensors"))
    so_far = FramePoseCorrections(len(data.rotation), frames, 2)
    so_far.load_state_dict({"table.weight": partial["poses.table.weight"]})
    fitted = fit_pose_calibration(data.rotation[frames], data.translation[frames],
                                  so_far.rows(frames).detach().double().numpy())
    assert np.abs(fitted).max() > 0
    np.testing.assert_allclose(partial["model.pose_calibration"].numpy(), fitted, atol=1e-9)
    train(avatar, tmp_path / "killed", config, device="cpu", show_progress=False, resume=True)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))["poses.table.weight"]
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))["poses.table.weight"]
    torch.testing.assert_close(resumed, straight, rtol=1e-3, atol=1e-6)
    corrections = FramePoseCorrections(len(data.rotation), frames, 2)
    corrections.load_state_dict({"table.weight": straight})
    rows = corrections.rows(frames).detach()
    assert rows.abs().max() > 1e-4
    torch.testing.assert_close(rows.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    # the finished model keeps the corrections' pose-dependent part, which rendering applies
    from lokitalk.render.loading import load_trained

    model = load_trained(tmp_path / "straight").model
    assert model.config.pose_calibration
    expected = fit_pose_calibration(data.rotation[frames], data.translation[frames], rows.double().numpy())
    np.testing.assert_allclose(model.pose_calibration.numpy(), expected, atol=1e-9)
    assert np.abs(expected).max() > 0


def test_a_resumed_run_keeps_the_pose_refinement_it_started_with(avatar, tmp_path):
    """A run started without refinement (a model from before it became `fast`'s default) resumes
    without it, and the other way round: its checkpoint has no corrections to resume, or has them."""
    from safetensors.torch import load_file

    for started in (False, True):
        config = replace(micro_config(40), pose_refinement=started, checkpoint_every=10)
        folder = tmp_path / f"started_{started}"
        train(avatar, folder, config, device="cpu", show_progress=False, stop_after=20)
        summary = train(avatar, folder, replace(config, pose_refinement=not started), device="cpu",
                        show_progress=False, resume=True)
        assert summary["finished"] and ("pose_corrections" in summary) == started
        assert ("poses.table.weight" in load_file(str(folder / "model.safetensors"))) == started
        assert json.loads((folder / "model.json").read_text())["train"]["pose_refinement"] == started


@pytest.mark.parametrize("name, refined", [("tiny", False), ("fast", True), ("full", True)])
def test_fast_and_full_refine_poses_and_tiny_does_not(name, refined):
    from lokitalk.train.config import preset

    assert preset(name).pose_refinement == refined


@pytest.mark.parametrize("name", ["tiny", "fast", "full"])
def test_every_preset_prunes_its_gradient_passes_and_the_bare_config_does_not(name):
    from lokitalk.train.config import PRUNE, preset

    assert preset(name).prune == PRUNE > 0 and TrainConfig().prune == 0.0


@pytest.mark.parametrize("name, weighted", [("tiny", False), ("fast", True), ("full", True)])
def test_fast_and_full_train_with_the_distortion_loss_and_tiny_does_not(name, weighted):
    from lokitalk.train.config import DISTORTION_WEIGHT, preset

    assert preset(name).distortion_weight == (DISTORTION_WEIGHT if weighted else 0.0)
    assert DISTORTION_WEIGHT > 0 and TrainConfig().distortion_weight == 0.0
    assert preset(name, "global").distortion_weight == preset(name).distortion_weight


def test_a_pruned_run_prunes_every_training_render_and_follows_the_exact_one(avatar, tmp_path, monkeypatch):
    import lokitalk.render.frames as frames

    seen, real = [], frames.render_rays
    monkeypatch.setattr(frames, "render_rays", lambda *args, **kwargs: (seen.append(args[4].prune), real(*args, **kwargs))[1])
    exact = train(avatar, tmp_path / "exact", micro_config(40), device="cpu", show_progress=False)
    assert set(seen) == {0.0}
    seen.clear()
    pruned = train(avatar, tmp_path / "pruned", replace(micro_config(40), prune=1e-4), device="cpu", show_progress=False)
    assert set(seen) == {1e-4} and len(seen) >= 40
    assert abs(pruned["last_loss"] - exact["last_loss"]) < 0.05 * exact["last_loss"]


@pytest.mark.parametrize("setting, message", [({"pose_start": 1.5}, "pose_start"),
                                              ({"pose_knot_frames": 0}, "pose_knot_frames")])
def test_bad_pose_refinement_settings_are_refused(avatar, tmp_path, setting, message):
    with pytest.raises(InputError, match=message):
        train(avatar, tmp_path / "m", replace(micro_config(2), pose_refinement=True, **setting), device="cpu",
              show_progress=False)


def test_evaluation_baselines_use_the_frames_the_model_trained_on(avatar, tmp_path):
    """A model trained on the first second only is compared with baselines built from that second,
    not from the whole train split it never saw."""
    from lokitalk.data.avatar import load_avatar, resize_image, training_frames
    from lokitalk.evaluate import metrics
    from lokitalk.evaluate.run import evaluate

    train(avatar, tmp_path / "m", replace(micro_config(2), train_seconds=1.0), device="cpu", show_progress=False)
    baselines = evaluate(tmp_path / "m", device="cpu", write_video=False)["baselines"]
    data = load_avatar(avatar)
    seen = training_frames(data, 1.0)
    assert 0 < len(seen) < len(data.split.train) and baselines["training_frames"] == len(seen)
    camera = data.camera.scaled(micro_config().image_scale)
    frames = lambda indices: np.stack([resize_image(data.frame(int(i)), camera) for i in indices])  # noqa: E731
    real = frames(data.split.test)
    assert baselines["mean_image_psnr"] == pytest.approx(metrics.mean_image_baseline(frames(seen), real), abs=1e-9)
    assert baselines["nearest_training_frame_psnr"] == pytest.approx(
        metrics.nearest_frame_baseline(frames(seen), real), abs=1e-9)
    assert baselines["mean_image_psnr"] != pytest.approx(
        metrics.mean_image_baseline(frames(data.split.train), real), abs=1e-6)
    # the nearest frames are frame numbers of the avatar, from the frames the model saw, and the
    # nearest frame's LMD reads the prepared landmarks of those frames at the rendered size
    nearest = np.array(baselines["nearest_training_frame_indices"])
    assert len(nearest) == len(real) and np.isin(nearest, seen).all()
    assert baselines["nearest_training_frame_psnr"] == pytest.approx(
        np.mean([metrics.psnr(a, b) for a, b in zip(frames(nearest), real)]), abs=1e-9)
    from lokitalk.face_model import load_face_template

    ok = data.valid[data.split.test] & data.valid[nearest]
    scale = micro_config().image_scale
    expected = metrics.landmark_distance(data.landmarks[nearest[ok]] * scale, data.landmarks[data.split.test[ok]] * scale,
                                         load_face_template().mouth_points)
    assert baselines["nearest_training_frame_lmd"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name, on", [("tiny", False), ("fast", True), ("full", True)])
def test_fast_and_full_train_with_the_proposal_union_and_tiny_does_not(name, on):
    from lokitalk.train.config import FINE_SAMPLES, FINE_WITH_COARSE, preset

    config = preset(name)
    assert config.fine_samples == (FINE_SAMPLES if on else 0) and config.fine_with_coarse == (FINE_WITH_COARSE and on)
    assert FINE_SAMPLES > 0 and TrainConfig().fine_samples == 0 and not TrainConfig().fine_with_coarse
    assert preset(name, "global").fine_samples == config.fine_samples  # the baseline samples alike

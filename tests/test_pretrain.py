"""Multi-identity pretraining on tiny synthetic identities: the prior helps a new identity, a
2-process gloo run follows the 1-process loss trajectory, a killed run resumes."""

import csv
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lokitalk.model.deformation import DeformationConfig
from lokitalk.model.encoding import TriPlaneConfig
from lokitalk.model.field import FieldConfig, ModelConfig
from lokitalk.model.identity import IdentityConfig
from lokitalk.train.config import TrainConfig

pytest.importorskip("mediapipe")

REPO = Path(__file__).resolve().parents[1]
# three "people": the synthetic subject with different skin/clothes/background tints and motion
TINTS = {"ann": (1.0, 1.0, 1.0), "bob": (1.12, 0.95, 0.85), "cy": (0.9, 1.0, 1.1)}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a small shared CPU, two threads of tiny matrix products mostly wait
    for each other (measured 50x slower under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    from conftest import consent_for

    from lokitalk.prepare.pipeline import prepare
    from lokitalk.prepare.runner import Reporter
    from lokitalk.synth import make_talking_clip, write_clip

    root = tmp_path_factory.mktemp("identities")
    out = {}
    for seed, (name, tint) in enumerate(TINTS.items()):
        clip = make_talking_clip(duration_s=3.0, size=96, seed=10 + seed)
        frames = np.clip(clip.frames.astype(np.float32) * np.float32(tint), 0, 255).astype(np.uint8)
        video = write_clip(replace(clip, frames=frames), root / f"{name}.mp4")
        consent_for(video)
        prepare(video, root / name, reporter=Reporter(quiet=True))
        out[name] = root / name
    return out


def micro_config(steps):
    grid = TriPlaneConfig(levels=3, features_per_level=2, base_resolution=8, max_resolution=32)
    model = ModelConfig(FieldConfig(grid=grid, hidden=16), DeformationConfig(hidden=16, signal_dim=8))
    return TrainConfig(preset="micro", model=model, steps=steps, rays_per_batch=256, samples_per_ray=12,
                       checkpoint_every=20, log_every=5, occupancy_warmup=10, occupancy_every=10,
                       occupancy_resolution=16, image_scale=0.5)


MICRO_IDENTITY = IdentityConfig(code_dim=8, offset_levels=2, offset_base_resolution=8, offset_max_resolution=16,
                                encoder_size=32, encoder_width=8)


def read_log(path):
    with open(path) as handle:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def prior(identities, tmp_path_factory):
    """A prior pretrained on two of the three identities (cy is held out)."""
    from lokitalk.train.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("pretrained")
    config = PretrainConfig(train=micro_config(240), identity=MICRO_IDENTITY, identities_per_step=2)
    summary = pretrain([identities["ann"], identities["bob"]], out, config, device="cpu", show_progress=False)
    assert summary["finished"]
    return out / "prior"


def held_out_psnr(model_dir, avatar_dir):
    """Mean PSNR of the model on its avatar's test frames (never trained on)."""
    from lokitalk.data.avatar import load_avatar, resize_image
    from lokitalk.evaluate import metrics
    from lokitalk.evaluate.run import render_test
    from lokitalk.render.loading import load_trained

    trained = load_trained(model_dir)
    avatar = load_avatar(avatar_dir)
    frames = avatar.split.test
    rendered, _ = render_test(trained, avatar, frames)
    cam = avatar.camera.scaled(trained.image_scale)
    return float(np.mean([metrics.psnr(r, resize_image(avatar.frame(int(i)), cam)) for r, i in zip(rendered, frames)]))


def test_the_prior_beats_from_scratch_on_a_new_identity(identities, prior, tmp_path):
    from lokitalk.train.trainer import train

    def test_psnr(model_dir):
        return held_out_psnr(model_dir, identities["cy"])

    steps = 30
    train(identities["cy"], tmp_path / "prior_ft", micro_config(steps), device="cpu", show_progress=False,
          prior=prior)
    train(identities["cy"], tmp_path / "scratch", micro_config(steps), device="cpu", show_progress=False)
    with_prior, scratch = test_psnr(tmp_path / "prior_ft"), test_psnr(tmp_path / "scratch")
    print(f"test PSNR after {steps} steps: prior {with_prior:.2f} dB, from scratch {scratch:.2f} dB")
    assert with_prior > scratch + 2.0


def test_fine_tuning_a_prior_can_refine_poses_and_keeps_their_calibration(identities, prior, tmp_path):
    """With pose refinement a fine-tune learns corrections (resumed on the same trajectory after a
    kill), and the finished model keeps the fit of their pose-dependent part beside the prior's
    weights and the person's parts: what rendering applies to unseen frames."""
    import torch
    from safetensors.torch import load_file

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.render.loading import load_trained
    from lokitalk.train.pose_refine import FramePoseCorrections, fit_pose_calibration
    from lokitalk.train.trainer import train

    config = replace(micro_config(40), pose_refinement=True, pose_start=0.25, pose_lr=1e-2, pose_knot_frames=2)
    summary = train(identities["cy"], tmp_path / "straight", config, device="cpu", show_progress=False,
                    prior=prior)
    assert summary["finished"] and summary["pose_corrections"]["rotation_deg_max"] > 0.01
    train(identities["cy"], tmp_path / "killed", config, device="cpu", show_progress=False, prior=prior,
          stop_after=30)
    train(identities["cy"], tmp_path / "killed", config, device="cpu", show_progress=False, prior=prior,
          resume=True)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))["poses.table.weight"]
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))["poses.table.weight"]
    torch.testing.assert_close(resumed, straight, rtol=1e-3, atol=1e-6)

    data = load_avatar(identities["cy"])
    frames = training_frames(data, None)
    corrections = FramePoseCorrections(data.num_frames, frames, 2)
    corrections.load_state_dict({"table.weight": straight})
    rows = corrections.rows(frames).detach().double().numpy()
    model = load_trained(tmp_path / "straight").model
    assert model.config.pose_calibration and model.config.identity is not None
    expected = fit_pose_calibration(data.rotation[frames], data.translation[frames], rows)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(model.pose_calibration.numpy(), expected, atol=1e-9)


def test_a_killed_pretraining_resumes_on_the_same_trajectory(identities, tmp_path):
    from lokitalk.train.pretrain import PretrainConfig, pretrain

    # with face depth on, so that each identity's draw of face points must be restored too
    config = PretrainConfig(train=replace(micro_config(40), face_depth_weight=0.01, face_depth_rays=32),
                            identity=MICRO_IDENTITY, identities_per_step=2)
    avatars = [identities["ann"], identities["bob"]]
    pretrain(avatars, tmp_path / "straight", config, device="cpu", show_progress=False)
    partial = pretrain(avatars, tmp_path / "killed", config, device="cpu", show_progress=False, stop_after=30)
    assert not partial["finished"] and partial["steps"] == 20
    resumed = pretrain(avatars, tmp_path / "killed", config, device="cpu", show_progress=False, resume=True)
    assert resumed["finished"] and resumed["steps"] == 40
    straight = dict(read_log(tmp_path / "straight" / "pretrain_log.csv"))
    after = [(s, loss) for s, loss in read_log(tmp_path / "killed" / "pretrain_log.csv") if s > 20]
    assert [s for s, _ in after][-1] == 40
    for step, loss in after:
        assert loss == pytest.approx(straight[step], rel=1e-4, abs=1e-6)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_pretrain_cli(identities, out, ranks=None):
    """`lokitalk pretrain` on ann and bob, 12 steps, both a step: one plain process (`ranks` None)
    or under torchrun with `ranks` gloo processes. The finished subprocess."""
    command = ["-m", "lokitalk.cli", "pretrain", str(identities["ann"]), str(identities["bob"]), "--preset", "tiny",
               "--steps", "12", "--identities-per-step", "2", "--device", "cpu", "--quiet", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if ranks is None:
        return subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=300)
    for attempt in range(2):  # a port taken between free_port() and torchrun's bind: one retry, fresh folder
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
                               str(ranks), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                               *command], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 or "address already in use" not in done.stderr.lower():
            break
        shutil.rmtree(out, ignore_errors=True)
    return done


def test_two_gloo_processes_follow_the_one_process_trajectory(identities, tmp_path):
    """torchrun, 2 CPU ranks (one identity each) vs one process doing both identities a step:
    the same losses within 1e-3 relative (only the order of floating-point sums differs)."""
    single = run_pretrain_cli(identities, tmp_path / "one")
    assert single.returncode == 0, single.stderr[-2000:]
    two = run_pretrain_cli(identities, tmp_path / "two", ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert '"world_size": 2' in two.stdout
    one_log = read_log(tmp_path / "one" / "pretrain_log.csv")
    two_log = read_log(tmp_path / "two" / "pretrain_log.csv")
    assert [s for s, _ in one_log] == [s for s, _ in two_log] == [10, 12]
    for (_, a), (_, b) in zip(one_log, two_log):
        assert b == pytest.approx(a, rel=1e-3)
    assert (tmp_path / "two" / "prior" / "identities" / "bob.safetensors").exists()  # gathered from rank 1


def test_one_rank_under_torchrun_uses_the_process_group_and_the_plain_trajectory(identities, tmp_path):
    """torchrun with one rank builds the process group (gloo here, NCCL on a GPU: how a one-GPU
    machine runs the NCCL path) and DDP, and follows the plain single process exactly."""
    single = run_pretrain_cli(identities, tmp_path / "one")
    assert single.returncode == 0, single.stderr[-2000:]
    assert '"backend": null' in single.stdout
    ranked = run_pretrain_cli(identities, tmp_path / "ranked", ranks=1)
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    assert '"backend": "gloo"' in ranked.stdout and '"world_size": 1' in ranked.stdout
    assert read_log(tmp_path / "one" / "pretrain_log.csv") == read_log(tmp_path / "ranked" / "pretrain_log.csv")


def test_overall_lip_scaling_keeps_the_directions_proportions(identities):
    from lokitalk.data.avatar import load_avatar
    from lokitalk.errors import InputError
    from lokitalk.train.prior import fit_lip_space, lip_map

    avatars = [load_avatar(path) for path in identities.values()]
    frames = [np.asarray(a.split.train) for a in avatars]
    per_component = fit_lip_space(avatars, frames, components=6, scaling="component")
    overall = fit_lip_space(avatars, frames, components=6, scaling="overall")
    np.testing.assert_allclose(overall.components, per_component.components)
    assert np.ptp(overall.scale) == 0  # one factor for every direction
    mapped = {}
    for name, space in (("component", per_component), ("overall", overall)):
        rows = []
        for avatar, f in zip(avatars, frames):
            matrix, bias = lip_map(avatar, f, space)
            rows.append(avatar.lip_feature[f] @ matrix + bias)
        mapped[name] = np.concatenate(rows)
    # the same features, each direction rescaled: component-scaled x its spread / the common factor
    np.testing.assert_allclose(mapped["overall"], mapped["component"] * per_component.scale / overall.scale,
                               rtol=1e-4, atol=1e-6)
    # unit overall spread about the rest mouth (the basis is an uncentred, identity-balanced PCA;
    # the three clips have about equal frame counts, hence the margin)
    total = (mapped["overall"] ** 2).mean(0).sum()
    assert 0.8 < total < 1.25, total
    spreads = np.sqrt((mapped["overall"] ** 2).mean(0))
    assert spreads[0] > 2 * spreads[-1]  # the major direction stays the major one (whitening would equalise)
    with pytest.raises(InputError, match="lip scaling must be one of"):
        fit_lip_space(avatars, frames, scaling="whiten")


def test_pretraining_adds_the_distortion_loss_on_every_identitys_render(identities, tmp_path, monkeypatch):
    """With `distortion_weight` each identity's rendered weights pay the distortion loss at that
    weight (a preset that has it pretrains with it, as its fine-tunes do); at 0 it is never built."""
    import lokitalk.train.pretrain as pretrain_module
    from lokitalk.train.losses import distortion_loss
    from lokitalk.train.pretrain import PretrainConfig, pretrain

    calls = []

    def recording(weights, distances, deltas, span):
        calls.append((weights.shape, bool(weights.requires_grad), span))
        return distortion_loss(weights, distances, deltas, span)

    monkeypatch.setattr(pretrain_module, "distortion_loss", recording)
    avatars = [identities["ann"], identities["bob"]]
    for weight in (0.0, 0.05):
        config = PretrainConfig(train=replace(micro_config(3), distortion_weight=weight), identity=MICRO_IDENTITY,
                                identities_per_step=2)
        pretrain(avatars, tmp_path / f"p{weight}", config, device="cpu", show_progress=False)
        if weight == 0:
            assert calls == []
    assert len(calls) == 3 * 2  # every step, both identities
    assert all(shape[1] == 12 and grad and span == pytest.approx(0.6) for shape, grad, span in calls)
    logs = [read_log(tmp_path / f"p{w}" / "pretrain_log.csv") for w in (0.0, 0.05)]
    assert logs[0][-1][1] != pytest.approx(logs[1][-1][1], rel=1e-6)  # the loss it adds is in the total


def test_pretraining_renders_through_the_proposal_stage_when_the_preset_has_one(identities, tmp_path, monkeypatch):
    """`fine_samples` reaches pretraining's renders: the weights each identity's loss sees are the
    fine samples', and the density-only coarse pass ran over the coarse ones."""
    import lokitalk.train.pretrain as pretrain_module
    from lokitalk.model.renderer import render_rays
    from lokitalk.train.pretrain import PretrainConfig, pretrain

    outputs = []

    def recording(*args, **kwargs):
        out = render_rays(*args, **kwargs)
        outputs.append(out)
        return out

    monkeypatch.setattr(pretrain_module, "render_rays", recording)
    config = PretrainConfig(train=replace(micro_config(2), fine_samples=6), identity=MICRO_IDENTITY,
                            identities_per_step=2)
    pretrain([identities["ann"], identities["bob"]], tmp_path / "p", config, device="cpu", show_progress=False)
    assert len(outputs) >= 2 * 2
    assert all(out.weights.shape[1] == 6 and out.coarse_evaluated > 0 for out in outputs)


def test_a_rigid_torso_prior_keeps_each_persons_mean_pose_and_fine_tunes(identities, tmp_path):
    """`torso_motion="rigid"`: every pretraining identity's parts hold the mean pose of its own
    training frames, the prior's shared config none; a fine-tune on a new person takes that
    person's mean pose, keeps it through save and load, and learns (test PSNR up from the start)."""
    import torch
    from safetensors.torch import load_file

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.model.rigid import mean_pose
    from lokitalk.render.loading import load_trained
    from lokitalk.train.pretrain import PretrainConfig, pretrain
    from lokitalk.train.trainer import train

    config = PretrainConfig(train=micro_config(40), identity=MICRO_IDENTITY, identities_per_step=2,
                            torso_motion="rigid")
    summary = pretrain([identities["ann"], identities["bob"]], tmp_path / "pre", config, device="cpu",
                       show_progress=False)
    prior = Path(summary["prior"])
    poses = {}
    for name in ("ann", "bob"):
        avatar = load_avatar(identities[name])
        frames = training_frames(avatar, None)
        poses[name] = load_file(str(prior / "identities" / f"{name}.safetensors"))["reference_pose"]
        np.testing.assert_allclose(poses[name].numpy(), mean_pose(avatar.rotation[frames], avatar.translation[frames]),
                                   atol=1e-6)
    assert not torch.allclose(poses["ann"], poses["bob"])

    cy = load_avatar(identities["cy"])
    frames = training_frames(cy, None)
    train(identities["cy"], tmp_path / "start", micro_config(1), device="cpu", show_progress=False, prior=prior)
    after = train(identities["cy"], tmp_path / "ft", micro_config(40), device="cpu", show_progress=False, prior=prior)
    model = load_trained(tmp_path / "ft").model
    assert model.config.deformation.torso_motion == "rigid" and model.config.deformation.reference_pose == ()
    np.testing.assert_allclose(model.identity.reference_pose.numpy(),
                               mean_pose(cy.rotation[frames], cy.translation[frames]), atol=1e-6)
    start, tuned = held_out_psnr(tmp_path / "start", identities["cy"]), held_out_psnr(tmp_path / "ft", identities["cy"])
    print(f"rigid-torso prior on cy: test PSNR {start:.2f} dB after 1 step, {tuned:.2f} dB after 40")
    assert after["finished"] and tuned > start + 1.0


def test_a_face_aligned_prior_moves_every_person_onto_the_mean_face_and_fine_tunes(identities, tmp_path):
    """`IdentityConfig.face_alignment`: the prior holds the pretraining people's mean face, each
    identity's parts the offsets from its own anchors to it; a fine-tune gives the new person
    theirs (target - own anchors), keeps them through save and load, and learns. A prior that
    says it aligns but holds no mean face is a one-line error."""
    from safetensors.torch import load_file, save_file

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.errors import InputError
    from lokitalk.render.loading import load_trained
    from lokitalk.train.pretrain import PretrainConfig, pretrain
    from lokitalk.train.prior import anchor_points_of, load_prior, mean_face
    from lokitalk.train.trainer import train

    config = PretrainConfig(train=micro_config(40), identity=replace(MICRO_IDENTITY, face_alignment=True),
                            identities_per_step=2)
    summary = pretrain([identities["ann"], identities["bob"]], tmp_path / "pre", config, device="cpu",
                       show_progress=False)
    prior_dir = Path(summary["prior"])
    prior = load_prior(prior_dir)
    people = [load_avatar(identities[name]) for name in ("ann", "bob")]
    frames = [training_frames(a, None) for a in people]
    np.testing.assert_allclose(prior.alignment_target, mean_face(people, frames), atol=1e-6)
    for avatar, chosen in zip(people, frames):
        parts = prior.identities[avatar.root.name]
        own = anchor_points_of(avatar, chosen)
        np.testing.assert_allclose(parts["alignment_anchors"].numpy(), own, atol=1e-6)
        np.testing.assert_allclose(parts["alignment_offsets"].numpy(), prior.alignment_target - own, atol=1e-6)
    assert np.abs(prior.alignment_target - anchor_points_of(people[0], frames[0])).max() > 1e-4

    cy = load_avatar(identities["cy"])
    train(identities["cy"], tmp_path / "start", micro_config(1), device="cpu", show_progress=False, prior=prior_dir)
    after = train(identities["cy"], tmp_path / "ft", micro_config(40), device="cpu", show_progress=False,
                  prior=prior_dir)
    model = load_trained(tmp_path / "ft").model
    assert model.config.identity.face_alignment
    own = anchor_points_of(cy, training_frames(cy, None))
    np.testing.assert_allclose(model.identity.alignment_offsets.numpy(), prior.alignment_target - own, atol=1e-6)
    start, tuned = held_out_psnr(tmp_path / "start", identities["cy"]), held_out_psnr(tmp_path / "ft", identities["cy"])
    print(f"face-aligned prior on cy: test PSNR {start:.2f} dB after 1 step, {tuned:.2f} dB after 40")
    assert after["finished"] and tuned > start + 1.0

    tensors = load_file(str(prior_dir / "prior.safetensors"))
    del tensors["align.target"]
    save_file(tensors, str(prior_dir / "prior.safetensors"))
    with pytest.raises(InputError, match="no mean face"):
        load_prior(prior_dir)

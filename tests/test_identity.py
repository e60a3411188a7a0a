"""The multi-identity model parts: offset-grid layout, resolving with the encoder's output, the
hypernetwork layer, single-person models untouched, and a prior that round-trips exactly."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lokitalk.model.deformation import DeformationConfig
from lokitalk.model.encoding import TriPlaneConfig, TriPlaneEncoding
from lokitalk.model.field import FieldConfig, ModelConfig, TalkingHead
from lokitalk.model.identity import IdentityConfig, IdentityEncoder, IdentityParts, sample_planes
from lokitalk.train.prior import LipSpace, Prior, load_prior, prior_model_config, save_prior


def micro_prior_config():
    grid = TriPlaneConfig(levels=3, features_per_level=2, base_resolution=8, max_resolution=32)
    base = ModelConfig(FieldConfig(grid=grid, hidden=16), DeformationConfig(hidden=16, signal_dim=8))
    ident = IdentityConfig(code_dim=8, offset_levels=2, offset_base_resolution=8, offset_max_resolution=16,
                           encoder_size=32, encoder_width=8)
    return prior_model_config(base, ident, lip_dim=6)


def batch(lip_dim=16):
    return {"lip_feature": torch.randn(lip_dim), "eye_ratio": torch.tensor([0.25, 0.26]),
            "rotation": torch.eye(3), "translation": torch.tensor([0.0, 0.0, 0.6])}


def test_offset_planes_sample_like_the_shared_grid():
    torch.manual_seed(0)
    enc = TriPlaneEncoding(TriPlaneConfig(levels=2, base_resolution=8, max_resolution=16, init_scale=1.0))
    x = torch.rand(50, 3) * 2 - 1
    ours = sample_planes(list(enc.dense), x).reshape(50, -1)
    assert torch.allclose(ours, enc(x), atol=1e-6)


def test_identity_parts_shift_only_their_levels_and_add_the_encoder_output():
    config = micro_prior_config()
    parts = IdentityParts(config)
    with torch.no_grad():
        for p in parts.offset:
            p.normal_()
    resolved = parts.resolve()
    x = torch.rand(20, 3) * 2 - 1
    feats = resolved.feature_offset(x, config.field.grid).view(20, 3, 3, 2)
    assert torch.all(feats[:, :, 2] == 0) and feats[:, :, :2].abs().sum() > 0  # only the coarse levels
    encoder = IdentityEncoder(config)
    codes = encoder(torch.rand(3, 3, 32, 32), torch.rand(3, 7))
    assert codes.dynamic.shape == (8,) and [o.shape for o in codes.offset] == [p.shape for p in parts.offset]
    base = codes._replace(dynamic=torch.ones(8))
    assert torch.equal(parts.resolve(base).dynamic, parts.dynamic + 1)
    parts.load_codes(base)
    assert torch.equal(parts.dynamic.detach(), torch.ones(8))
    with pytest.raises(ValueError, match="lip map"):
        parts.set_lip_map(np.zeros((3, 6)), np.zeros(6))


def test_a_multi_identity_model_renders_and_identities_differ():
    torch.manual_seed(0)
    config = micro_prior_config()
    model = TalkingHead(config)
    model.identity.set_lip_map(np.random.default_rng(0).normal(size=(16, 6)), np.zeros(6))
    directions = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    points = torch.rand(64, 3) * 0.2 - 0.1
    b = batch()
    d0, rgb0, att = model.field_for(b, directions)(points, torch.arange(64))
    assert d0.shape == (64,) and rgb0.shape == (64, 3) and set(att) == {"lip", "eye", "torso"}
    other = IdentityParts(config)
    with torch.no_grad():
        other.appearance.fill_(3.0)
        other.dynamic.fill_(1.0)
    d1, rgb1, _ = model.field_for(b, directions, other.resolve())(points, torch.arange(64))
    assert not torch.allclose(rgb0, rgb1)
    # the generated layer follows the dynamic feature
    generated = model.hyper.layer(other.dynamic).weight.abs().sum()
    assert generated > model.hyper.layer(model.identity.dynamic).weight.abs().sum()
    assert model.canonical_density(points).shape == (64,)
    glob = TalkingHead(replace(config, deformation=replace(config.deformation, kind="global")))
    assert glob.field_for(b, directions)(points, torch.arange(64))[0].shape == (64,)


def test_single_person_models_are_unchanged():
    model = TalkingHead(ModelConfig())
    keys = set(model.state_dict())
    assert not any(k.startswith(("hyper.", "identity.")) for k in keys)
    assert "deformation.identity_proj.weight" not in keys
    assert model.canonical.density_net[0].in_features == model.canonical.encoding.output_dim
    with pytest.raises(ValueError, match="identity"):
        TalkingHead(micro_prior_config(), with_identity=False).field_for(batch(), torch.ones(1, 3))


def test_a_prior_round_trips_exactly(tmp_path):
    torch.manual_seed(1)
    config = micro_prior_config()
    head = TalkingHead(config, with_identity=False)
    encoder = IdentityEncoder(config)
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_()
    parts = {name: {k: torch.randn_like(v) for k, v in IdentityParts(config).state_dict().items()}
             for name in ("ann", "bob")}
    rng = np.random.default_rng(0)
    space = LipSpace(rng.normal(size=(6, 120)), rng.random(6) + 0.1)
    prior = Prior(config, space, head.state_dict(), encoder.state_dict(), parts, {"steps": 7, "preset": "micro"})
    save_prior(prior, tmp_path / "prior")
    back = load_prior(tmp_path / "prior")
    assert back.model_config == config
    assert back.meta == {"steps": 7, "preset": "micro"}
    np.testing.assert_array_equal(back.lip_space.components, space.components)
    np.testing.assert_array_equal(back.lip_space.scale, space.scale)
    for ours, theirs in ((prior.head, back.head), (prior.encoder, back.encoder), *(
            (parts[n], back.identities[n]) for n in parts)):
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), k
    rebuilt = back.build_encoder()
    images, cams = torch.rand(2, 3, 32, 32), torch.rand(2, 7)
    assert torch.equal(rebuilt(images, cams).geometry, encoder(images, cams).geometry)


def test_a_fine_tune_schedule_override_replaces_the_choice_by_seconds():
    import pytest

    from lokitalk.errors import InputError
    from lokitalk.train.prior import FinetuneSchedule, finetune_schedule

    assert finetune_schedule(5.0, 300) == FinetuneSchedule(30, 0.5, 1.0)  # few seconds: cautious
    assert finetune_schedule(30.0, 300) == FinetuneSchedule(15, 1.0, 1.0)
    # long budgets: the person's parts alone for a fixed number of steps, not a share
    assert finetune_schedule(5.0, 3000) == FinetuneSchedule(30, 0.5, 1.0)
    assert finetune_schedule(30.0, 3000) == FinetuneSchedule(15, 1.0, 1.0)
    assert finetune_schedule(5.0, 100) == FinetuneSchedule(10, 0.5, 1.0)
    assert finetune_schedule(5.0, 3000, (0.1, 0.5, 1.0)) == FinetuneSchedule(300, 0.5, 1.0)  # an override is as given
    assert finetune_schedule(5.0, 300, (0.05, 1.0, 1.0)) == FinetuneSchedule(15, 1.0, 1.0)
    schedule = finetune_schedule(5.0, 300, (0.1, 0.5, 1.0))
    assert [schedule.shared_factor(s, grid) for s, grid in ((29, False), (30, False), (30, True))] == [0.0, 0.5, 1.0]
    with pytest.raises(InputError, match="fine-tune schedule"):
        finetune_schedule(5.0, 300, (0.1, -1.0, 1.0))


def test_pretraining_steps_default_to_a_few_hundred_renders_of_each_identity():
    import pytest

    from lokitalk.errors import InputError
    from lokitalk.train.pretrain import RENDERS_PER_IDENTITY, default_pretrain_steps

    assert default_pretrain_steps(400, 11, 1) == 11 * RENDERS_PER_IDENTITY  # many people: more steps
    assert default_pretrain_steps(400, 23, 4) == -(-23 * RENDERS_PER_IDENTITY // 4)  # rounded up
    assert default_pretrain_steps(30000, 25, 4) == 30000  # never fewer than the preset's
    assert default_pretrain_steps(400, 1, 1) == 400
    with pytest.raises(InputError, match="at least one identity"):
        default_pretrain_steps(400, 0, 1)


def test_pretrain_command_uses_the_default_steps_unless_told(monkeypatch, tmp_path, capsys):
    import conftest

    import lokitalk.train.pretrain as pretrain_module

    seen = []
    monkeypatch.setattr(pretrain_module, "pretrain", lambda avatars, out, config, **kw: seen.append(config) or {})
    avatars = [str(tmp_path / f"p{i}") for i in range(20)]  # 20 x 360 renders: more than the preset's steps
    code, _, err = conftest.run_cli(["pretrain", *avatars, "--out", str(tmp_path / "prior"), "--quiet"], capsys)
    assert code in (0, None), err
    code, _, err = conftest.run_cli(["pretrain", *avatars, "--out", str(tmp_path / "prior"), "--steps", "50",
                                     "--identities-per-step", "4", "--face-alignment", "--quiet"], capsys)
    assert code in (0, None), err
    assert [c.train.steps for c in seen] == [20 * pretrain_module.RENDERS_PER_IDENTITY, 50]
    assert [c.identity.face_alignment for c in seen] == [False, True]
    assert seen[1].identity == replace(IdentityConfig(), face_alignment=True)  # nothing else changed


def test_the_density_only_path_gives_the_full_paths_density():
    """field_for's `density` (the renderer's look-ahead pruning) against the full per-sample path,
    for a single-person model, a rigid-torso one with a body correction, and a multi-identity one."""
    torch.manual_seed(1)
    points = torch.rand(64, 3) * 0.3 - 0.15
    directions = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    rigid = ModelConfig(deformation=DeformationConfig(torso_motion="rigid", reference_pose=(0.05, 0.0, 0.0, 0.0, 0.0, 0.6)))
    prior = TalkingHead(micro_prior_config())
    prior.identity.set_lip_map(np.random.default_rng(0).normal(size=(16, 6)), np.zeros(6))
    cases = [(TalkingHead(ModelConfig()), batch()), (TalkingHead(rigid), dict(batch(), body_correction=torch.tensor(
        [0.02, -0.01, 0.03, 0.004, 0.0, -0.002]))), (prior, batch())]
    for model, frame in cases:
        for module in model.modules():  # deformations that move points (zero-initialised last layers otherwise)
            if isinstance(module, torch.nn.Linear) and not module.weight.abs().sum():
                torch.nn.init.normal_(module.weight, std=0.3)
        field = model.field_for(frame, directions)
        full = field(points, torch.arange(64))[0]
        torch.testing.assert_close(field.density(points, torch.arange(64)), full)
        assert full.std() > 0
    # the body correction reaches the density path too
    plain = cases[1][0].field_for(batch(), directions)
    assert not torch.allclose(plain.density(points, torch.arange(64)),
                              cases[1][0].field_for(cases[1][1], directions).density(points, torch.arange(64)))


def test_a_rigid_torso_prior_holds_each_identity_at_its_own_reference_pose():
    """A multi-identity rigid torso stage reads the identity's reference pose: with the frame at that
    pose it moves points as the same weights with a learned stage do, and away from it by exactly
    the torso attention times the camera-rigid map to that pose (model.rigid). Parts saved before
    the pose load with zeros; a pose in the shared config, or none in the identity, is an error."""
    from lokitalk.model.field import pose_vector
    from lokitalk.model.rigid import camera_rigid_offset, rotation_from_vector

    torch.manual_seed(0)
    rigid_cfg = prior_model_config(micro_prior_config(), micro_prior_config().identity, 6, torso_motion="rigid")
    rigid = TalkingHead(rigid_cfg)
    for module in rigid.modules():  # nets that move points (zero-initialised last layers otherwise)
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    learned = TalkingHead(micro_prior_config())
    learned.load_state_dict(rigid.state_dict())
    reference = torch.tensor([0.1, -0.2, 0.05, 0.01, -0.02, 0.62])
    rigid.identity.set_reference_pose(reference)
    learned.identity.load_state_dict(rigid.identity.state_dict())
    points = torch.rand(40, 3) * 0.3 - 0.15
    signals = batch()

    def deform(model, frame_pose):
        rotation = rotation_from_vector(frame_pose[None, :3])[0]
        frame = dict(signals, rotation=rotation, translation=frame_pose[3:])
        lip, eye, pose, ident = model.frame_signals(frame, torch.device("cpu"))
        return model.deformation(points, lip[None], eye[None], pose[None], ident.deformation), pose

    at_reference, _ = deform(rigid, reference)
    torch.testing.assert_close(at_reference.canonical, deform(learned, reference)[0].canonical, atol=1e-5, rtol=0)
    turned = torch.tensor([0.3, 0.1, -0.1, 0.03, 0.0, 0.58])
    (ours, pose), (plain, _) = deform(rigid, turned), deform(learned, turned)
    x1 = points + ours.face_offset
    expected = ours.attention["torso"][:, None] * camera_rigid_offset(x1, pose[None], reference)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(ours.canonical - plain.canonical, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pose, pose_vector(rotation_from_vector(turned[None, :3])[0], turned[3:]))

    old = {k: v for k, v in rigid.identity.state_dict().items() if k != "reference_pose"}
    parts = IdentityParts(rigid_cfg)
    parts.set_reference_pose(reference)
    parts.load_state_dict(old)
    assert torch.equal(parts.reference_pose, torch.zeros(6))
    with pytest.raises(ValueError, match="6 numbers"):
        parts.set_reference_pose([0.0] * 5)
    with pytest.raises(ValueError, match="each identity's reference pose"):
        TalkingHead(replace(rigid_cfg, deformation=replace(rigid_cfg.deformation, reference_pose=(0.0,) * 6)))
    lip, eye, pose, ident = rigid.frame_signals(batch(), torch.device("cpu"))
    with pytest.raises(ValueError, match="needs the identity's reference pose"):
        rigid.deformation(points, lip[None], eye[None], pose[None], ident.deformation._replace(reference_pose=None))

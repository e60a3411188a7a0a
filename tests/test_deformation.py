import torch

from lokitalk.model.deformation import DeformationConfig, build_deformation, positional_encoding
from lokitalk.model.field import ModelConfig, TalkingHead, pose_vector


def inputs(m=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(m, 3, generator=g) - 0.5) * 0.4
    lip = torch.randn(m, 16, generator=g)
    eye = torch.rand(m, 2, generator=g) * 0.3
    pose = torch.randn(m, 6, generator=g) * 0.1
    return x, lip, eye, pose


def test_a_fresh_deformation_is_the_identity():
    for kind in ("region", "global"):
        for encoding in ("frequency", "grid"):
            torch.manual_seed(0)
            deform = build_deformation(DeformationConfig(kind=kind, position_encoding=encoding))
            x, lip, eye, pose = inputs()
            out = deform(x, lip, eye, pose)
            torch.testing.assert_close(out.canonical, x)


def test_a_grid_position_encoding_is_local_and_trained_with_the_grids():
    from lokitalk.model.field import FieldConfig
    from lokitalk.train.checkpoint import model_config_from_dict, model_config_to_dict

    box = FieldConfig()
    config = ModelConfig(deformation=DeformationConfig(position_encoding="grid", grid_levels=2, grid_base_resolution=8,
                                                       grid_max_resolution=16))
    model = TalkingHead(config)
    encoder = model.deformation.position
    assert {id(p) for p in encoder.grid.parameters()} <= {id(p) for p in model.grid_parameters()}
    assert not any("box" in k for k in model.deformation.state_dict())  # the box comes from the config
    # moving one value of the finest xy grid changes the encoding only within one cell of it
    x, *_ = inputs(400, seed=3)
    before = encoder(x)
    with torch.no_grad():
        encoder.grid.dense[1][0, :, 8, 8] += 1.0  # xy plane, level 1 (16 cells): vertex (8, 8)
    changed = (encoder(x) - before).abs().sum(1) > 0
    unit = (x - torch.tensor(box.box_min)) / (torch.tensor(box.box_max) - torch.tensor(box.box_min)) * 2 - 1
    vertex = -1 + 2 * 8 / 15
    near = ((unit[:, 0] - vertex).abs() < 2 / 15) & ((unit[:, 1] - vertex).abs() < 2 / 15)
    assert changed.any() and torch.equal(changed, near)
    # the config round-trips through a model folder's JSON and rebuilds the same function
    restored = TalkingHead(model_config_from_dict(model_config_to_dict(config)))
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored.deformation.position(x), encoder(x))


def test_the_eye_regions_finer_bands_enter_only_through_the_eye_attention():
    from lokitalk.model.deformation import frequency_bands

    torch.manual_seed(0)
    deform = build_deformation(DeformationConfig(posenc_frequencies=6, eye_posenc_frequencies=8, hidden=16))
    perturb_outputs(deform)
    x, lip, eye, pose = inputs(50, seed=5)
    extra = frequency_bands(x, 6, 8)
    assert extra.shape == (50, 12) and deform.face_trunk[0].in_features == (3 + 36) + 32 + 32 + 12
    angles = torch.stack([x * 64 * torch.pi, x * 128 * torch.pi], -1)  # 2^6 pi x, 2^7 pi x
    torch.testing.assert_close(extra, torch.cat([angles.sin().flatten(1), angles.cos().flatten(1)], 1))
    band_columns = slice(deform.face_trunk[0].in_features - 12, None)

    def moved_by_the_bands(eye_logit_bias: float) -> torch.Tensor:
        with torch.no_grad():
            deform.face_attention[-1].bias[1] = eye_logit_bias
            before = deform(x, lip, eye, pose).canonical
            saved = deform.face_trunk[0].weight[:, band_columns].clone()
            deform.face_trunk[0].weight[:, band_columns] += 1.0
            after = deform(x, lip, eye, pose).canonical
            deform.face_trunk[0].weight[:, band_columns] = saved
        return (after - before).abs().amax()

    assert moved_by_the_bands(-80.0) == 0  # eye attention 0: the finer bands are not seen
    assert moved_by_the_bands(80.0) > 1e-3  # eye attention 1: they are


def perturb_outputs(deform):
    with torch.no_grad():
        for p in deform.parameters():
            p.add_(torch.randn_like(p) * 0.3)


def lip_influence(deform, x, lip, eye, pose):
    lip = lip.clone().requires_grad_(True)
    deform(x, lip, eye, pose).canonical.sum().backward()
    return lip.grad.abs().sum(1)  # per point


def test_region_ties_the_lip_signal_to_where_its_attention_is():
    torch.manual_seed(1)
    deform = build_deformation(DeformationConfig(kind="region"))
    perturb_outputs(deform)
    x, lip, eye, pose = inputs()
    influence = lip_influence(deform, x, lip, eye, pose)
    assert influence.min() > 0  # attention is never exactly zero after sigmoid
    # force the lip attention to zero everywhere: the lip feature can no longer move any point
    with torch.no_grad():
        deform.face_attention[-1].bias[0] = -1e4
    assert lip_influence(deform, x, lip, eye, pose).max() == 0
    # eye and pose still act
    eye = eye.clone().requires_grad_(True)
    deform(x, lip, eye, pose).canonical.sum().backward()
    assert eye.grad.abs().sum() > 0


def test_a_separate_eye_branch_keeps_the_eye_ratio_out_of_the_lip_trunk():
    torch.manual_seed(3)
    deform = build_deformation(DeformationConfig(kind="region", separate_eyes=True))
    perturb_outputs(deform)
    x, lip, eye, pose = inputs()
    fresh = build_deformation(DeformationConfig(kind="region", separate_eyes=True))
    torch.testing.assert_close(fresh(x, lip, eye, pose).canonical, x)  # starts as the identity too
    # the eye ratio acts only through the eye branch: shut the eye attention and it moves nothing,
    # while the lip feature still does
    with torch.no_grad():
        deform.face_attention[-1].bias[1] = -1e4
    eye = eye.clone().requires_grad_(True)
    deform(x, lip, eye, pose).canonical.sum().backward()
    assert eye.grad.abs().max() == 0
    assert lip_influence(deform, x, lip, eye.detach(), pose).min() > 0
    # and with the eye attention open, the lip trunk's output does not depend on the eye ratio
    with torch.no_grad():
        deform.face_attention[-1].bias[1] = 0.0
        deform.eye_net[-1].weight.zero_()
        deform.eye_net[-1].bias.zero_()
    a = deform(x, lip, eye.detach(), pose).canonical
    b = deform(x, lip, eye.detach() + 0.2, pose).canonical
    torch.testing.assert_close(a, b)


def test_silu_deformation_keeps_a_learning_signal_where_relu_units_are_dead():
    for activation, alive in (("relu", False), ("silu", True)):
        torch.manual_seed(4)
        fresh = build_deformation(DeformationConfig(kind="region", activation=activation))
        x, lip, eye, pose = inputs()
        torch.testing.assert_close(fresh(x, lip, eye, pose).canonical, x)  # identity at the start either way
        deform = build_deformation(DeformationConfig(kind="region", activation=activation))
        perturb_outputs(deform)
        with torch.no_grad():  # every unit of the lip trunk's output negative: "dead" for a ReLU
            deform.face_trunk[-1].weight.mul_(0.01)
            deform.face_trunk[-1].bias.fill_(-2.0)
            deform.torso_attention[-1].bias.fill_(-1e4)  # the torso stage off: only the face path counts
        lip_grad = lip.clone().requires_grad_(True)
        deform(x, lip_grad, eye, pose).canonical.sum().backward()
        trunk_grad = deform.face_trunk[-1].weight.grad.abs().sum()
        assert (lip_grad.grad.abs().sum() > 0) == alive
        assert (trunk_grad > 0) == alive  # a ReLU trunk gets no gradient to climb back with


def test_global_deformation_lets_every_signal_move_every_point():
    torch.manual_seed(2)
    deform = build_deformation(DeformationConfig(kind="global"))
    perturb_outputs(deform)
    x, lip, eye, pose = inputs()
    assert lip_influence(deform, x, lip, eye, pose).min() > 0


def test_region_attentions_are_probabilities_per_point():
    deform = build_deformation(DeformationConfig(kind="region"))
    out = deform(*inputs())
    for name in ("lip", "eye", "torso"):
        assert out.attention[name].shape == (64,)
        assert torch.all((out.attention[name] >= 0) & (out.attention[name] <= 1))


def test_positional_encoding_and_pose_vector():
    x = torch.tensor([[0.25, -0.5, 0.0]])
    enc = positional_encoding(x, 2)
    assert enc.shape == (1, 15)
    torch.testing.assert_close(enc[0, 3:9:2], torch.sin(torch.pi * x[0]))  # [x,y,z] x [f0,f1], flattened
    angle = 0.3
    rot = torch.tensor([[1.0, 0, 0], [0, torch.cos(torch.tensor(angle)), -torch.sin(torch.tensor(angle))],
                        [0, torch.sin(torch.tensor(angle)), torch.cos(torch.tensor(angle))]])
    vec = pose_vector(rot, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(vec, torch.tensor([angle, 0.0, 0.0, 0.0, 0.0, 1.0]), atol=1e-5, rtol=0)


def test_the_model_renders_density_only_inside_its_box():
    model = TalkingHead(ModelConfig())
    inside = torch.zeros(4, 3)
    outside = torch.full((4, 3), 2.0)
    assert torch.all(model.canonical.density(inside) > 0)
    assert torch.all(model.canonical.density(outside) == 0)


def test_training_with_the_displacement_loss_composites_each_samples_squared_displacement():
    from lokitalk.train.losses import displacement_loss

    torch.manual_seed(0)
    model = TalkingHead(ModelConfig())
    torch.nn.init.normal_(model.deformation.face_out.weight, std=0.05)  # a deformation that moves points
    x, lip, eye, pose = inputs(32)
    directions = torch.nn.functional.normalize(torch.randn(32, 3), dim=-1)
    _, _, extras = model.evaluate_points(x, directions, lip[:1], eye[:1], pose[:1])
    assert set(extras) == {"lip", "eye", "torso"}  # not asked for: training without the loss does no extra work
    model.track_displacement = True
    _, _, extras = model.evaluate_points(x, directions, lip[:1], eye[:1], pose[:1])
    torch.nn.init.normal_(model.deformation.torso_net[-1].weight, std=0.05)  # and a torso stage that does too
    deformed = model.deformation(x, lip[:1], eye[:1], pose[:1])
    stage1 = x + model.deformation.face_out(model.deformation.act(model.deformation.face_trunk(torch.cat(
        [model.deformation.position(x), *_face_inputs(model.deformation, x, lip[:1], eye[:1])], -1))))
    torch.testing.assert_close(extras["displacement"], ((stage1 - x) ** 2).sum(-1))  # stage 1's part only
    assert float(((deformed.canonical - stage1) ** 2).sum(-1).max().detach()) > 0  # the torso stage moved them further
    free = (1 - deformed.attention["lip"]) * (1 - deformed.attention["eye"])  # away from lips and eyes
    torch.testing.assert_close(extras["displacement_unattended"], extras["displacement"] * free)
    assert float(displacement_loss(extras, unattended=True).detach()) < float(displacement_loss(extras).detach())
    assert float(extras["displacement"].max().detach()) > 0
    # in cm²: a ray whose points all moved 1 cm costs 1
    assert abs(float(displacement_loss({"displacement": torch.full((5,), 1e-4)})) - 1.0) < 1e-6
    # a step on the loss shrinks the displacement
    loss = displacement_loss(extras)
    loss.backward()
    grads = [p for p in model.deformation.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in grads))
    with torch.no_grad():
        for p in grads:
            p -= 1e-3 * p.grad / norm  # a small step along the gradient
    _, _, after = model.evaluate_points(x, directions, lip[:1], eye[:1], pose[:1])
    assert float(displacement_loss(after).detach()) < float(loss.detach())
    model.eval()  # rendering: no extra work
    _, _, extras = model.evaluate_points(x, directions, lip[:1], eye[:1], pose[:1])
    assert "displacement" not in extras


def _face_inputs(deform, x, lip, eye):
    """The face trunk's signal inputs, written out (the reference for stage 1's displacement)."""
    att = torch.sigmoid(deform.face_attention(deform.position(x)))
    return [att[:, :1] * deform.lip_proj(lip), att[:, 1:] * deform.eye_proj(eye)]


def test_offset_scale_scales_every_displacement_and_adams_first_step_with_it():
    """Adam moves each weight by ~lr whatever the gradient's size, so how far one step can move
    the points is set by the output's units: at offset_scale s, exactly s times as far."""
    x, lip, eye, pose = inputs()
    for kind in ("region", "global"):
        moved = {}
        for scale in (1.0, 0.1):
            torch.manual_seed(5)
            deform = build_deformation(DeformationConfig(kind=kind, offset_scale=scale))
            torch.testing.assert_close(deform(x, lip, eye, pose).canonical, x)  # still starts as the identity
            if kind == "region":  # the torso stage reads the face stage's output: compare the face stage alone
                with torch.no_grad():
                    deform.torso_attention[-1].bias.fill_(-1e4)
            optimizer = torch.optim.Adam(deform.parameters(), lr=5e-3, eps=1e-15)
            target = x + torch.tensor([0.3, -0.2, 0.1])  # far away: a pull that Adam normalises
            ((deform(x, lip, eye, pose).canonical - target) ** 2).sum().backward()
            optimizer.step()
            with torch.no_grad():
                moved[scale] = deform(x, lip, eye, pose).canonical - x
        assert moved[1.0].abs().max() > 1e-3
        torch.testing.assert_close(moved[0.1], 0.1 * moved[1.0], rtol=1e-4, atol=1e-7)

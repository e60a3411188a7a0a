"""The compiled per-sample path (deformation + canonical field, identity parts included) gives
the eager model's densities, colours, attentions and gradients. On the CPU torch.compile needs a
C++ compiler; without one the test skips (the eager fallback itself is tested in test_trainer)."""

import shutil

import pytest
import torch

from lokitalk.model.field import TalkingHead
from lokitalk.train.accelerate import Acceleration, accelerate_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile on the CPU needs a C++ compiler")


def test_compiled_point_path_of_a_multi_identity_model_matches_eager():
    from test_identity import batch, micro_prior_config

    torch.manual_seed(0)
    model = TalkingHead(micro_prior_config())
    with torch.no_grad():  # non-trivial identity parts and deformation, so that every branch matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frame = batch(lip_dim=model.identity.lip_matrix.shape[0])
    directions = torch.nn.functional.normalize(torch.randn(3000, 3), dim=-1)
    points = (torch.rand(3000, 3) - 0.5) * 0.4
    index = torch.arange(3000)

    def run():
        model.zero_grad()
        density, rgb, attention = model.field_for(frame, directions)(points, index)
        (density.mean() + rgb.sum() + sum(a.sum() for a in attention.values())).backward()
        grads = [p.grad.clone() for p in (model.canonical.density_net[0].weight, model.identity.dynamic,
                                          model.deformation.face_trunk[0].weight, model.identity.offset[0])]
        return density.detach(), rgb.detach(), {k: v.detach() for k, v in attention.items()}, grads

    eager = run()
    accelerate_model(model, Acceleration(amp=False, amp_dtype=None, compile=True))
    compiled = run()
    assert model.point_runner.fallback_reason is None  # it really ran compiled
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-5)
    for name in eager[2]:
        torch.testing.assert_close(compiled[2][name], eager[2][name], rtol=1e-4, atol=1e-5)
    for got, want in zip(compiled[3], eager[3]):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)
    # another number of samples: the same graph (dynamic shapes), still the eager result
    few = model.field_for(frame, directions)(points[:777], index[:777])[0].detach()
    torch.testing.assert_close(few, eager[0][:777], rtol=1e-4, atol=1e-5)
    # the density-only path of training's look-ahead pruning compiles too, to the same densities
    with torch.no_grad():
        density = model.field_for(frame, directions).density(points, index)
    assert model.density_runner.fallback_reason is None
    torch.testing.assert_close(density, eager[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention_frame", ["head", "head+body"])
def test_compiled_point_path_of_a_rigid_torso_model_matches_eager(attention_frame):
    """The camera-rigid torso path (its own float32 region inside autocast) compiles into the same
    densities, colours and attentions as eager, on a turned head, with the torso attention reading
    the head frame or both frames."""
    from lokitalk.model.deformation import DeformationConfig
    from lokitalk.model.encoding import TriPlaneConfig
    from lokitalk.model.field import FieldConfig, ModelConfig
    from lokitalk.model.rigid import rotation_from_vector

    torch.manual_seed(0)
    config = ModelConfig(FieldConfig(grid=TriPlaneConfig(levels=3, base_resolution=8, max_resolution=32), hidden=16),
                         DeformationConfig(hidden=16, signal_dim=8, torso_motion="rigid",
                                           reference_pose=(0.01, -0.02, 0.0, 0.0, 0.01, 0.6),
                                           torso_attention_frame=attention_frame))
    model = TalkingHead(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frame = {"lip_feature": torch.randn(16), "eye_ratio": torch.tensor([0.25, 0.26]),
             "rotation": rotation_from_vector(torch.tensor([[0.1, -0.15, 0.05]]))[0],
             "translation": torch.tensor([0.01, 0.0, 0.62])}
    directions = torch.nn.functional.normalize(torch.randn(2000, 3), dim=-1)
    points = (torch.rand(2000, 3) - 0.5) * 0.4
    index = torch.arange(2000)
    with torch.no_grad():
        eager = model.field_for(frame, directions)(points, index)
        accelerate_model(model, Acceleration(amp=False, amp_dtype=None, compile=True))
        compiled = model.field_for(frame, directions)(points, index)
    assert model.point_runner.fallback_reason is None
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled[2]["torso"], eager[2]["torso"], rtol=1e-4, atol=1e-5)

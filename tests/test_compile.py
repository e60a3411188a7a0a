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

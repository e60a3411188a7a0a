"""The proposal stage: fine samples drawn from the coarse weights (model.resample, RenderConfig.fine_samples)."""

import pytest
import torch
from conftest import camera_rays

from lokitalk.model.renderer import RenderConfig, composite_weights, render_rays
from lokitalk.model.resample import PADDING, fine_distances, fine_distances_reference, histogram


def _coarse(rays=6, samples=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    near = 0.2 + 0.1 * torch.rand(rays, generator=g)
    step = 0.05 + 0.02 * torch.rand(rays, 1, generator=g)
    t = near[:, None] + (torch.arange(samples) + torch.rand(rays, samples, generator=g)) * step
    deltas = torch.cat([t[:, 1:] - t[:, :-1], torch.full((rays, 1), 0.03)], 1)
    density = torch.zeros(rays, samples)
    density[:, 5:8] = 60.0 * torch.rand(rays, 3, generator=g)  # a surface
    density[1] = 0.0  # a ray that meets nothing
    density[2, 0] = 80.0  # a surface right at the first sample
    return t, deltas, composite_weights(density, deltas), near


@pytest.mark.parametrize("stratified, padding", [(False, PADDING), (True, PADDING), (True, 0.4), (False, 0.0)])
def test_fine_distances_match_the_slow_walk_along_the_bins(stratified, padding):
    t, deltas, weights, near = _coarse()
    fine = fine_distances(t, deltas, weights, near, 16, stratified, torch.Generator().manual_seed(3), padding)
    # the same positions in (0,1) the fast path drew
    jitter = torch.rand(6, 16, generator=torch.Generator().manual_seed(3)) if stratified else torch.full((6, 16), 0.5)
    u = (torch.arange(16) + jitter) / 16
    reference = fine_distances_reference(t, deltas, weights, near, 16, u, padding)
    torch.testing.assert_close(fine.double(), reference, atol=1e-5, rtol=0)
    assert bool((fine[:, 1:] >= fine[:, :-1]).all())  # ascending, as compositing needs
    end = t[:, -1] + deltas[:, -1]
    assert bool((fine >= near[:, None]).all()) and bool((fine <= end[:, None]).all())


def test_fine_samples_crowd_onto_the_surface_and_an_empty_ray_gets_even_spacing():
    t, deltas, weights, near = _coarse()
    fine = fine_distances(t, deltas, weights, near, 20, stratified=False)
    for ray in (0, 3, 4, 5):
        lo, hi = float(t[ray, 4]), float(t[ray, 7] + deltas[ray, 7])  # the dilated surface bins
        inside = ((fine[ray] >= lo) & (fine[ray] <= hi)).float().mean()
        assert inside >= 1 - PADDING - 0.05
    end = float(t[1, -1] + deltas[1, -1])
    expected = float(near[1]) + (torch.arange(20) + 0.5) / 20 * (end - float(near[1]))
    torch.testing.assert_close(fine[1], expected, atol=1e-5, rtol=0)
    # a surface at the first sample: the stretch in front of it is covered too (dilation towards the camera)
    assert float(fine[2, 0]) < float(t[2, 0])


def test_histogram_dilates_each_mass_towards_the_camera():
    t = torch.tensor([[0.4, 0.5, 0.6, 0.7]])
    deltas = torch.full((1, 4), 0.1)
    weights = torch.tensor([[0.0, 0.0, 0.8, 0.1]])
    edges, mass = histogram(t, deltas, weights, torch.tensor([0.3]))
    torch.testing.assert_close(edges, torch.tensor([[0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]))
    # bins [0.3,0.4] [0.4,0.5] [0.5,0.6] [0.6,0.7] [0.7,0.8]: the surface's mass also lies on the bin before it
    torch.testing.assert_close(mass, torch.tensor([[0.0, 0.0, 0.8, 0.8, 0.1]]))


def _thin_shell(points, ray_index):
    """A thin opaque shell (1 cm) around a sphere of radius 0.15, coloured by position."""
    r = points.norm(dim=-1)
    density = torch.where((r > 0.15) & (r < 0.16), torch.full_like(r, 400.0), torch.zeros_like(r))
    rgb = torch.stack([0.5 + 2 * points[:, 0], 0.5 + 2 * points[:, 1], 0.5 - points[:, 2]], -1).clamp(0, 1)
    return density, rgb


def _rays(n=48, seed=2):
    return camera_rays(n, seed, spread=0.18)


def test_proposal_rendering_is_closer_to_the_dense_integral_than_coarse_samples_at_equal_full_evaluations():
    origins, directions = _rays()
    background = torch.tensor([0.1, 0.9, 0.2])
    truth = render_rays(_thin_shell, origins, directions, background, RenderConfig(4096, 0.2, 1.0))
    coarse = render_rays(_thin_shell, origins, directions, background, RenderConfig(16, 0.2, 1.0))
    # coarse density samples ~1.25 cm apart: the 1 cm shell is seen by (nearly) every ray that crosses it
    proposal = render_rays(_thin_shell, origins, directions, background, RenderConfig(64, 0.2, 1.0, fine_samples=16))
    assert proposal.evaluated == coarse.evaluated == 48 * 16  # as many full evaluations
    assert proposal.coarse_evaluated == 48 * 64 and coarse.coarse_evaluated == 0
    coarse_error = float((coarse.rgb - truth.rgb).abs().mean())
    proposal_error = float((proposal.rgb - truth.rgb).abs().mean())
    assert proposal_error < 0.05 * coarse_error
    # even 64 full evaluations a ray, evenly spaced, are further off than 16 placed by the proposal
    dense = render_rays(_thin_shell, origins, directions, background, RenderConfig(64, 0.2, 1.0))
    assert proposal_error < 0.5 * float((dense.rgb - truth.rgb).abs().mean())
    # the fine samples' weights are what the output reports: as many columns as fine samples
    assert proposal.weights.shape == (48, 16) and proposal.distances.shape == (48, 16)
    torch.testing.assert_close(proposal.opacity, proposal.weights.sum(1))


def test_proposal_rendering_with_termination_changes_pixels_by_little_and_evaluates_less():
    origins, directions = _rays(seed=4)
    background = torch.tensor([0.8, 0.2, 0.5])
    config = RenderConfig(32, 0.2, 1.0, fine_samples=12)
    full = render_rays(_thin_shell, origins, directions, background, config)
    early = render_rays(_thin_shell, origins, directions, background,
                        RenderConfig(32, 0.2, 1.0, fine_samples=12, termination=1e-3, segments=4))
    assert early.coarse_evaluated < full.coarse_evaluated and early.evaluated < full.evaluated
    # what the coarse pass skipped is behind the surface, where the fine samples barely go
    assert float((early.rgb - full.rgb).abs().max()) < 0.02


def test_gradients_reach_the_field_through_the_fine_samples_only():
    origins, directions = _rays(16, seed=5)
    scale = torch.tensor(1.0, requires_grad=True)

    def field(points, ray_index):
        density, rgb = _thin_shell(points, ray_index)
        return density * scale, rgb

    config = RenderConfig(24, 0.2, 1.0, stratified=True, fine_samples=8)
    out = render_rays(field, origins, directions, torch.zeros(3), config, generator=torch.Generator().manual_seed(0))
    out.rgb.sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad) and scale.grad.abs() > 0
    with pytest.raises(ValueError, match="fine_samples"):
        render_rays(field, origins, directions, torch.zeros(3), RenderConfig(24, 0.2, 1.0, fine_samples=-1))
    with pytest.raises(ValueError, match="fine_padding"):
        render_rays(field, origins, directions, torch.zeros(3), RenderConfig(24, 0.2, 1.0, fine_samples=8,
                                                                            fine_padding=1.5))


def test_pruning_with_a_proposal_drops_only_fine_samples_hidden_behind_the_coarse_surface():
    origins, directions = _rays(32, seed=6)
    background = torch.tensor([0.3, 0.3, 0.7])

    def opaque(points, ray_index):  # every ray that meets the shell stops inside it
        density, rgb = _thin_shell(points, ray_index)
        return density * 10.0, rgb

    calls = []

    def counted(points, ray_index):
        calls.append(len(points))
        return opaque(points, ray_index)

    counted.density = lambda points, ray_index: opaque(points, ray_index)[0]
    config = RenderConfig(64, 0.2, 1.0, fine_samples=16)
    full = render_rays(opaque, origins, directions, background, config)
    pruned = render_rays(counted, origins, directions, background, RenderConfig(64, 0.2, 1.0, fine_samples=16,
                                                                                 prune=1e-4))
    assert len(calls) == 1  # the full field once; the look-ahead was the coarse density pass
    assert pruned.evaluated < full.evaluated  # the padding samples behind the shell
    assert float((pruned.rgb - full.rgb).abs().max()) < 2e-3


def test_fine_with_coarse_adds_the_coarse_samples_with_opacity_and_no_other():
    """The union: every fine sample plus the coarse samples with some opacity in front of the
    surface, composited in ray order; the image is as close to the integral as the fine samples alone."""
    origins, directions = _rays(24, seed=8)
    background = torch.tensor([0.2, 0.5, 0.9])

    def hazy_shell(points, ray_index):  # a faint haze in front of the shell: coarse samples with opacity
        density, rgb = _thin_shell(points, ray_index)
        haze = torch.where((points.norm(dim=-1) > 0.16) & (points.norm(dim=-1) < 0.3), 2.0, 0.0)
        return density + haze, rgb

    truth = render_rays(hazy_shell, origins, directions, background, RenderConfig(4096, 0.2, 1.0))
    fine = render_rays(hazy_shell, origins, directions, background, RenderConfig(64, 0.2, 1.0, fine_samples=8,
                                                                                   prune=1e-4))
    union = render_rays(hazy_shell, origins, directions, background,
                        RenderConfig(64, 0.2, 1.0, fine_samples=8, prune=1e-4, fine_with_coarse=True))
    assert union.weights.shape == (24, 64 + 8)
    assert bool((union.distances[:, 1:] >= union.distances[:, :-1]).all())  # merged in ray order
    # the coarse samples it added: in the haze in front of the shell, where the fine ones are few
    coarse = RenderConfig(64, 0.2, 1.0)
    t = coarse.near + (torch.arange(64) + 0.5) * (coarse.far - coarse.near) / 64
    points = origins[:, None] + t[None, :, None] * directions[:, None]
    hazy = ((points.norm(dim=-1) > 0.16) & (points.norm(dim=-1) < 0.3)).sum()
    assert fine.evaluated < union.evaluated <= fine.evaluated + int(hazy) + 24 * 4
    assert float((union.rgb - truth.rgb).abs().mean()) < 1.5 * float((fine.rgb - truth.rgb).abs().mean()) + 2e-3


def test_a_block_with_nothing_worth_evaluating_does_not_call_the_field():
    """Rendering with termination and the union: a block whose samples are all skipped (the rays
    met nothing there) must not reach the field with zero points, which real fields cannot take."""
    origins, directions = _rays(8, seed=9)

    def strict(points, ray_index):
        assert len(points) > 0, "the field was called with no samples"
        return _thin_shell(points, ray_index)

    strict.density = lambda points, ray_index: _thin_shell(points, ray_index)[0]
    config = RenderConfig(32, 0.2, 1.0, fine_samples=4, fine_padding=0.0, fine_with_coarse=True, termination=1e-3,
                          segments=8)
    out = render_rays(strict, origins, directions, torch.zeros(3), config)
    reference = render_rays(_thin_shell, origins, directions, torch.zeros(3), config)
    torch.testing.assert_close(out.rgb, reference.rgb)

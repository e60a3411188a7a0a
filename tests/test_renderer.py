import pytest
import torch
from conftest import camera_rays

from lokitalk.model.renderer import OccupancyGrid, RenderConfig, ray_box_interval, render_dense_reference, render_rays


def blob_field(points, ray_index):
    """A soft sphere of radius 0.15 at the origin; exactly zero density outside 0.2."""
    r = points.norm(dim=-1)
    density = torch.where(r < 0.2, 40.0 * torch.clamp(0.2 - r, min=0) / 0.2, torch.zeros_like(r))
    rgb = torch.stack([0.5 + points[:, 0], 0.5 + points[:, 1], 0.5 - points[:, 2]], -1).clamp(0, 1)
    return density, rgb


def rays(n=24, seed=0):
    return camera_rays(n, seed, spread=0.25)


def test_marching_with_an_all_occupied_grid_equals_dense_sampling():
    origins, directions = rays()
    background = torch.tensor([0.2, 0.3, 0.9])
    config = RenderConfig(samples_per_ray=48, near=0.2, far=1.0)
    grid = OccupancyGrid([-0.5] * 3, [0.5] * 3, resolution=16)
    fast = render_rays(blob_field, origins, directions, background, config, grid)
    reference = render_dense_reference(blob_field, origins, directions, background, config)
    torch.testing.assert_close(fast.rgb, reference, atol=1e-5, rtol=1e-5)


def test_an_updated_grid_skips_empty_space_without_changing_the_image():
    origins, directions = rays(64, seed=3)
    background = torch.tensor([1.0, 1.0, 1.0])
    config = RenderConfig(samples_per_ray=64, near=0.2, far=1.0)
    grid = OccupancyGrid([-0.5] * 3, [0.5] * 3, resolution=32, decay=0.0, threshold=1e-6)
    dense = render_rays(blob_field, origins, directions, background, config, None)
    occupied = grid.update(lambda p: blob_field(p, None)[0], generator=torch.Generator().manual_seed(0))
    assert occupied < 0.1  # the blob fills a small part of the box
    # cells touching the blob stay occupied only if a jittered sample hit density: grow the mask by one cell
    grid.occupied.copy_(torch.nn.functional.max_pool3d(grid.occupied[None, None].float(), 3, 1, 1)[0, 0] > 0)
    skipped = render_rays(blob_field, origins, directions, background, config, grid)
    assert skipped.evaluated < 0.5 * dense.evaluated  # rays aim at the blob: ~35 % of samples remain
    torch.testing.assert_close(skipped.rgb, dense.rgb, atol=1e-6, rtol=1e-6)


def test_opacity_and_background():
    origins, directions = rays(8)
    config = RenderConfig(samples_per_ray=32, near=0.2, far=1.0)
    empty = lambda p, i: (torch.zeros(len(p)), torch.zeros(len(p), 3))  # noqa: E731
    out = render_rays(empty, origins, directions, torch.tensor([0.1, 0.2, 0.3]), config)
    torch.testing.assert_close(out.rgb, torch.tensor([[0.1, 0.2, 0.3]]).expand(8, 3))
    assert torch.all(out.opacity == 0)
    solid = lambda p, i: (torch.full((len(p),), 1e4), torch.ones(len(p), 3))  # noqa: E731
    out = render_rays(solid, origins, directions, torch.zeros(3), config)
    torch.testing.assert_close(out.opacity, torch.ones(8))
    torch.testing.assert_close(out.depth, torch.full((8,), 0.2 + 0.8 / 64), atol=1e-4, rtol=0)


def test_stratified_sampling_is_unbiased_on_average():
    origins, directions = rays(16, seed=5)
    config = RenderConfig(samples_per_ray=16, near=0.2, far=1.0)
    background = torch.zeros(3)
    fine = render_rays(blob_field, origins, directions, background, RenderConfig(256, 0.2, 1.0))
    g = torch.Generator().manual_seed(0)
    strat = RenderConfig(16, 0.2, 1.0, stratified=True)
    mean = torch.stack([render_rays(blob_field, origins, directions, background, strat, generator=g).opacity
                        for _ in range(64)]).mean(0)
    coarse = render_rays(blob_field, origins, directions, background, config).opacity
    assert (mean - fine.opacity).abs().mean() <= (coarse - fine.opacity).abs().mean() + 1e-3


def test_gradients_flow_to_the_field():
    origins, directions = rays(4)
    scale = torch.tensor(1.0, requires_grad=True)

    def field(points, index):
        d, c = blob_field(points, index)
        return d * scale, c

    out = render_rays(field, origins, directions, torch.zeros(3), RenderConfig(32, 0.2, 1.0))
    out.rgb.sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad) and scale.grad.abs() > 0


def test_early_termination_skips_hidden_samples_and_changes_pixels_by_at_most_the_threshold():
    origins, directions = rays(64, seed=7)
    background = torch.tensor([0.9, 0.1, 0.4])

    def opaque_blob(points, ray_index):  # a dense blob: rays that hit it stop within a few samples
        density, rgb = blob_field(points, ray_index)
        return density * 20.0, rgb

    full = render_rays(opaque_blob, origins, directions, background, RenderConfig(64, 0.2, 1.0))
    for threshold in (1e-2, 1e-3):
        early = render_rays(opaque_blob, origins, directions, background,
                            RenderConfig(64, 0.2, 1.0, termination=threshold, segments=8))
        assert float((early.rgb - full.rgb).abs().max()) <= threshold + 1e-6
        assert early.evaluated < 0.8 * full.evaluated  # samples behind the surface were skipped
    # rays that miss the blob are never terminated: identical, and the reference agrees
    reference = render_dense_reference(opaque_blob, origins, directions, background, RenderConfig(64, 0.2, 1.0))
    torch.testing.assert_close(early.rgb, reference, atol=1e-3 + 1e-5, rtol=0)


def test_ray_box_interval_matches_marching_along_the_ray():
    g = torch.Generator().manual_seed(11)
    box = (torch.tensor([-0.3, -0.2, -0.25]), torch.tensor([0.3, 0.4, 0.2]))
    origins = (torch.rand(200, 3, generator=g) - 0.5) * 2.0
    directions = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    targets = box[0] + torch.rand(100, 3, generator=g) * (box[1] - box[0])  # half the rays aim at the box
    directions[100:] = torch.nn.functional.normalize(targets - origins[100:], dim=-1)
    directions[:5, 1:] = 0.0  # axis-parallel rays
    directions[:5, 0] = 1.0
    entry, exit_, hit = ray_box_interval(origins, directions, *box)
    t = torch.linspace(-3, 3, 20001)
    points = origins[:, None] + t[None, :, None] * directions[:, None]  # every ray marched in fine steps
    inside = ((points >= box[0]) & (points <= box[1])).all(-1)  # [R,T]
    assert torch.equal(hit, inside.any(1))
    first = t[inside.float().argmax(1)]
    last = t[len(t) - 1 - inside.flip(1).float().argmax(1)]
    assert float((first - entry)[hit].abs().max()) < 4e-4 and float((last - exit_)[hit].abs().max()) < 4e-4
    assert hit.sum() > 50 and (~hit).sum() > 20  # both kinds of rays were tested


def test_box_sampling_equals_the_reference_and_rays_that_miss_cost_nothing():
    origins, directions = rays(32, seed=9)
    directions[:4] = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.1]), dim=0)  # these miss the box
    background = torch.tensor([0.3, 0.6, 0.1])
    box = (torch.tensor([-0.25, -0.25, -0.25]), torch.tensor([0.25, 0.25, 0.25]))
    config = RenderConfig(samples_per_ray=24, near=0.1, far=1.2, box_sampling=True)
    out = render_rays(blob_field, origins, directions, background, config, box=box)
    reference = render_dense_reference(blob_field, origins, directions, background, config, box=box)
    torch.testing.assert_close(out.rgb, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.rgb[:4], background.expand(4, 3))
    assert out.evaluated == 28 * 24  # only the rays that cross the box were sampled
    # the same samples spread over the whole near..far span see the blob more coarsely
    fine = render_rays(blob_field, origins, directions, background, RenderConfig(512, 0.1, 1.2))
    coarse = render_rays(blob_field, origins, directions, background, RenderConfig(24, 0.1, 1.2))
    assert (out.rgb - fine.rgb).abs().mean() < 0.6 * (coarse.rgb - fine.rgb).abs().mean()


def test_tightening_the_grid_only_removes_faint_cells():
    grid = OccupancyGrid([-0.5] * 3, [0.5] * 3, resolution=16, decay=0.0, threshold=1e-6)
    grid.update(lambda p: blob_field(p, None)[0], generator=torch.Generator().manual_seed(0))
    before = grid.occupied.clone()
    unchanged = OccupancyGrid([-0.5] * 3, [0.5] * 3, resolution=16)
    unchanged.load_state_dict(grid.state_dict())
    assert unchanged.tighten(1e-6) == float(before.float().mean())  # at the training threshold: nothing changes
    grid.tighten(20.0, margin=0)
    assert torch.equal(grid.occupied, before & (grid.density > 20.0))
    assert 0 < grid.occupied.sum() < before.sum()
    # the blob's dense core still renders as before for rays through the centre
    origins = torch.tensor([[0.0, 0.0, -0.6]])
    directions = torch.tensor([[0.0, 0.0, 1.0]])
    config = RenderConfig(64, 0.2, 1.0)
    full = render_rays(blob_field, origins, directions, torch.zeros(3), config, unchanged)
    tight = render_rays(blob_field, origins, directions, torch.zeros(3), config, grid)
    assert tight.evaluated < full.evaluated
    assert float((tight.rgb - full.rgb).abs().max()) < 0.05


def _trainable_blob():
    """An opaque blob with a density scale and a colour shift to take gradients."""
    scale = torch.tensor(20.0, requires_grad=True)
    shift = torch.tensor([0.05, -0.02, 0.03], requires_grad=True)

    def field(points, ray_index):
        density, rgb = blob_field(points, ray_index)
        return density * scale, (rgb + shift).clamp(0, 1)

    return field, (scale, shift)


def _image_and_gradient(config, seed=5):
    origins, directions = rays(96, seed=seed)
    field, params = _trainable_blob()
    out = render_rays(field, origins, directions, torch.tensor([0.9, 0.1, 0.4]), config)
    target = torch.full_like(out.rgb, 0.3)
    ((out.rgb - target) ** 2).sum().backward()
    return out, torch.cat([params[0].grad[None], params[1].grad])


def test_look_ahead_pruning_keeps_the_image_and_the_gradient_and_evaluates_fewer_samples():
    samples = 64
    full, full_grad = _image_and_gradient(RenderConfig(samples, 0.2, 1.0))
    # which samples deserve a gradient, written out: opacity and light reaching them above the threshold
    origins, directions = rays(96, seed=5)
    t = torch.linspace(0.2, 1.0, samples + 1)[:-1] + 0.4 / samples
    points = origins[:, None] + t[None, :, None] * directions[:, None]
    density = 20.0 * blob_field(points.reshape(-1, 3), None)[0].reshape(96, samples)
    deltas = torch.cat([torch.full((samples - 1,), 0.8 / samples), (1.0 - t[-1:]).clamp_min(1e-4)])
    alpha = 1 - torch.exp(-density * deltas)
    light = torch.cumprod(torch.cat([torch.ones(96, 1), 1 - alpha[:, :-1]], 1), 1)
    for threshold in (1e-4, 1e-3):
        pruned, pruned_grad = _image_and_gradient(RenderConfig(samples, 0.2, 1.0, prune=threshold))
        assert pruned.evaluated == int(((alpha > threshold) & (light > threshold)).sum())
        assert pruned.evaluated < 0.5 * full.evaluated
        # each dropped sample in front of the surface hides at most `threshold`, those behind it add
        # at most `threshold` together
        assert float((pruned.rgb - full.rgb).detach().abs().max()) <= (samples + 1) * threshold
        assert float((pruned_grad - full_grad).norm() / full_grad.norm()) < 2 * threshold
    # a vanishing threshold drops only samples that contribute nothing
    exact, exact_grad = _image_and_gradient(RenderConfig(samples, 0.2, 1.0, prune=1e-30))
    torch.testing.assert_close(exact.rgb, full.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(exact_grad, full_grad, atol=1e-5, rtol=1e-6)


def test_pruning_reads_the_fields_density_path_when_it_has_one():
    origins, directions = rays(32, seed=2)
    config = RenderConfig(48, 0.2, 1.0, prune=1e-4)
    calls = []

    def with_density(points, ray_index):
        return blob_field(points, ray_index)

    def density_only(points, ray_index):
        calls.append(len(points))
        return blob_field(points, ray_index)[0]

    fallback = render_rays(blob_field, origins, directions, torch.zeros(3), config)
    with_density.density = density_only
    fast = render_rays(with_density, origins, directions, torch.zeros(3), config)
    assert calls == [len(origins) * 48]  # every occupied sample (no grid: all of them), once
    torch.testing.assert_close(fast.rgb, fallback.rgb, atol=0, rtol=0)
    assert fast.evaluated == fallback.evaluated
    with_density.density = lambda points, ray_index: torch.zeros(len(points))  # says: nothing is there
    assert render_rays(with_density, origins, directions, torch.zeros(3), config).evaluated == 0
    with pytest.raises(ValueError, match="exclusive"):
        render_rays(blob_field, origins, directions, torch.zeros(3), RenderConfig(48, 0.2, 1.0, prune=1e-4,
                                                                                    termination=1e-3))

"""The distortion loss (train.losses.distortion_loss): against its pairwise reference, what it
prefers, and that training with it makes the rendered surface thinner."""

from dataclasses import replace

import pytest
import torch

from lokitalk.train.losses import distortion_loss, distortion_loss_reference


def ray_layout(rays: int, samples: int, generator: torch.Generator):
    t = torch.sort(0.3 + 0.6 * torch.rand(rays, samples, generator=generator, dtype=torch.float64), dim=1).values
    far = torch.full((rays, 1), 0.9, dtype=torch.float64)
    deltas = torch.cat([t[:, 1:], far], dim=1) - t
    return t, deltas


def test_matches_the_pairwise_reference_with_pruned_samples():
    g = torch.Generator().manual_seed(0)
    t, deltas = ray_layout(7, 11, g)
    weights = torch.rand(7, 11, generator=g, dtype=torch.float64) / 11
    weights[torch.rand(7, 11, generator=g) < 0.4] = 0.0  # pruned or empty samples carry no weight
    fast = distortion_loss(weights, t, deltas, 0.6)
    assert float(fast) == pytest.approx(float(distortion_loss_reference(weights, t, deltas, 0.6)), rel=1e-5)


def test_a_thin_surface_costs_less_than_a_slab_and_less_when_nearer_together():
    t = torch.linspace(0.3, 0.9, 33)[:-1][None].double()
    deltas = torch.full_like(t, 0.6 / 32)
    thin = torch.zeros_like(t)
    thin[0, 16] = 0.99
    slab = torch.zeros_like(t)
    slab[0, 15:18] = 0.33
    two_layers_near, two_layers_far = torch.zeros_like(t), torch.zeros_like(t)
    two_layers_near[0, [10, 12]] = 0.5
    two_layers_far[0, [10, 20]] = 0.5
    values = [float(distortion_loss(w, t, deltas, 0.6)) for w in (thin, slab, two_layers_near, two_layers_far)]
    assert values[0] < values[1] < values[3] and values[2] < values[3]
    # one interval: only the within-interval term, w^2 delta / 3 in span units
    assert values[0] == pytest.approx(0.99**2 * (1 / 32) / 3, rel=1e-6)


def test_gradient_pulls_weight_towards_the_bulk():
    t = torch.linspace(0.3, 0.9, 17)[:-1][None].double()
    deltas = torch.full_like(t, 0.6 / 16)
    weights = torch.zeros_like(t)
    weights[0, 8] = 0.8
    weights[0, 2] = 0.1  # a floater in front of the surface
    weights.requires_grad_(True)
    distortion_loss(weights, t, deltas, 0.6).backward()
    assert weights.grad[0, 2] > weights.grad[0, 7] > 0  # the far-off floater is the dearest weight


def test_training_with_it_thins_the_rendered_surface(tmp_path):
    """Two micro runs, same seed, with and without the loss: on the same held batch of rays the
    rendered weights are more compact (lower distortion) with it, and the image is as good."""
    from conftest import synthetic_avatar
    from test_trainer import micro_config

    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.data.rays import RaySampler
    from lokitalk.model.renderer import RenderConfig
    from lokitalk.render.frames import render_batch
    from lokitalk.render.loading import load_trained
    from lokitalk.train.config import training_rays
    from lokitalk.train.trainer import train

    avatar = synthetic_avatar(tmp_path / "a", 2.0, 64, 4)
    spread, error = {}, {}
    for weight in (0.0, 0.2):
        config = replace(micro_config(150), distortion_weight=weight)
        train(avatar, tmp_path / f"m{weight}", config, device="cpu", show_progress=False)
        trained = load_trained(tmp_path / f"m{weight}")
        data = load_avatar(avatar)
        batch = RaySampler(data, training_rays(config), frames=training_frames(data, None), seed=5).sample()
        render = RenderConfig(samples_per_ray=config.samples_per_ray)
        with torch.no_grad():
            out = render_batch(trained.model, batch, trained.grid, render)
        person = batch["alpha"] > 0.5
        spread[weight] = float(distortion_loss(out.weights[person], out.distances[person], out.deltas[person], 0.6))
        error[weight] = float(((out.rgb - batch["rgb"]) ** 2).mean())
    assert spread[0.2] < 0.7 * spread[0.0]
    assert error[0.2] < 1.3 * error[0.0]

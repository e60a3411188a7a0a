import pytest
import torch

from lokitalk.model.encoding import TriPlaneConfig, TriPlaneEncoding, encode_reference


def make(config, seed=0):
    torch.manual_seed(seed)
    enc = TriPlaneEncoding(config)
    with torch.no_grad():  # values large enough that interpolation errors would show
        for p in enc.parameters():
            p.uniform_(-1, 1)
    return enc


def random_points(n, seed=1, margin=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * margin


@pytest.mark.parametrize("config", [
    TriPlaneConfig(levels=3, features_per_level=2, base_resolution=4, max_resolution=16),
    TriPlaneConfig(levels=4, features_per_level=3, base_resolution=5, max_resolution=33, hash_table_size=256),
])
def test_fast_encoding_matches_the_per_point_reference(config):
    enc = make(config)
    x = random_points(40)
    x[0] = torch.tensor([-1.0, 1.0, 0.0])  # grid corners and edges
    x[1] = torch.tensor([1.0, 1.0, 1.0])
    x[2] = torch.tensor([1.7, -3.0, 0.2])  # outside: clamped to the border
    fast = enc(x)
    assert fast.shape == (40, config.output_dim)
    torch.testing.assert_close(fast, encode_reference(enc, x), atol=1e-5, rtol=1e-5)


def test_hashed_levels_are_used_only_above_the_table_size():
    config = TriPlaneConfig(levels=4, base_resolution=8, max_resolution=64, hash_table_size=1024)
    enc = TriPlaneEncoding(config)
    kinds = [kind for kind, _ in enc.level_kind]
    expected = ["hashed" if r * r > 1024 else "dense" for r in config.resolutions()]
    assert kinds == expected and "hashed" in kinds and "dense" in kinds


def test_gradients_match_the_reference():
    config = TriPlaneConfig(levels=2, features_per_level=2, base_resolution=4, max_resolution=9, hash_table_size=32)
    enc = make(config)
    x = random_points(12, margin=0.95)
    weights = torch.randn(12, config.output_dim)
    (enc(x) * weights).sum().backward()
    fast_grads = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    (encode_reference(enc, x) * weights).sum().backward()
    for fast, ref in zip(fast_grads, [p.grad for p in enc.parameters()]):
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_grid_values_are_reproduced_at_cell_centres():
    config = TriPlaneConfig(levels=1, features_per_level=1, base_resolution=5, max_resolution=5)
    enc = make(config)
    grid = enc.dense[0]
    # cell (i=3, j=1) of the xy plane holds the value at x = -1 + 2*3/4, y = -1 + 2*1/4
    x = torch.tensor([[0.5, -0.5, 0.0]])
    assert enc(x)[0, 0].item() == pytest.approx(grid[0, 0, 3, 1].item(), abs=1e-6)


def test_default_config_sizes():
    config = TriPlaneConfig()
    res = config.resolutions()
    assert res[0] == 64 and res[-1] == 512 and len(res) == 12
    enc = TriPlaneEncoding(config)
    values = sum(p.numel() for p in enc.parameters())
    assert values == 3 * 2 * sum(r * r for r in res)  # dense: 2.47 M cells, 4.9 M values
    assert enc(torch.zeros(5, 3)).shape == (5, 72)

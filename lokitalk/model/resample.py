"""Fine samples where a ray's coarse weights are: inverse-transform sampling of a histogram.

The renderer's proposal stage (`RenderConfig.fine_samples`, model.renderer) evaluates the density
alone at coarse samples spread over the ray, composites their weights, and draws the samples the
full field is evaluated at from those weights, so that they crowd onto the surface (NeRF's
hierarchical sampling, with the one field as its own proposal, as NeuS does).

The histogram follows the compositing's own convention: the sample at t_k stands for the interval
[t_k, t_k + delta_k]. The density is only known at t_k, so a surface whose first dense sample is
t_k may begin anywhere after t_{k-1}: each interval's mass is dilated by one interval towards the
camera (the larger of its own weight and the next one's), and the stretch from the ray's entry to
t_0 gets t_0's. A share `padding` of the fine samples is spread uniformly over the ray instead, so
that density the coarse samples stepped over can still be found (and an empty ray gets evenly
spaced samples). The coarse samples must still see the surface: one thinner than their spacing
can fall between them on some rays, and no fine sample then goes there (the density-only pass
costs a fraction of a full one, so they can be dense). `fine_distances_reference` is the slow per-ray walk that tests compare.
"""

from __future__ import annotations

import torch

# share of the fine samples spread uniformly over each ray's span
PADDING = 0.1


def histogram(t: torch.Tensor, deltas: torch.Tensor, weights: torch.Tensor, near: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse samples t [R,S] (ray order), their interval lengths [R,S], composited weights [R,S] and
    each ray's entry [R] -> (bin edges [R,S+2], bin masses [R,S+1]), masses dilated towards the camera."""
    edges = torch.cat([near[:, None], t, t[:, -1:] + deltas[:, -1:]], dim=1)
    w = weights.clamp_min(0)
    dilated = torch.cat([torch.maximum(w[:, :-1], w[:, 1:]), w[:, -1:]], dim=1)
    return edges, torch.cat([w[:, :1], dilated], dim=1)


def _bin_probabilities(edges: torch.Tensor, mass: torch.Tensor, padding: float) -> torch.Tensor:
    """[R,B] probability of each bin: the normalised mass blended with the bins' share of the span."""
    lengths = (edges[:, 1:] - edges[:, :-1]).clamp_min(0)
    uniform = lengths / lengths.sum(1, keepdim=True).clamp_min(1e-12)
    total = mass.sum(1, keepdim=True)
    weighted = (1 - padding) * mass / total.clamp_min(1e-12) + padding * uniform
    return torch.where(total > 1e-8, weighted, uniform)  # a ray that met nothing: evenly spaced


def fine_distances(t: torch.Tensor, deltas: torch.Tensor, weights: torch.Tensor, near: torch.Tensor, count: int,
                   stratified: bool, generator: torch.Generator | None = None, padding: float = PADDING
                   ) -> torch.Tensor:
    """[R,count] fine sample distances, ascending: the inverse of the histogram's cumulative
    distribution at (k + u) / count, u = 1/2 or (stratified, training) one uniform draw per sample."""
    edges, mass = histogram(t.float(), deltas.float(), weights.float(), near.float())
    probabilities = _bin_probabilities(edges, mass, padding)
    cdf = torch.cat([torch.zeros_like(probabilities[:, :1]), torch.cumsum(probabilities, 1)], dim=1)
    cdf = cdf / cdf[:, -1:].clamp_min(1e-12)
    rays = t.shape[0]
    if stratified:
        jitter = torch.rand(rays, count, generator=generator, device="cpu").to(t.device)
    else:
        jitter = torch.full((rays, count), 0.5, device=t.device)
    u = (torch.arange(count, device=t.device) + jitter) / count
    bins = (torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True) - 1).clamp(0, edges.shape[1] - 2)
    lo, hi = cdf.gather(1, bins), cdf.gather(1, bins + 1)
    fraction = torch.where(hi > lo, (u - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(u)).clamp(0, 1)
    start, end = edges.gather(1, bins), edges.gather(1, bins + 1)
    return (start + fraction * (end - start)).to(t.dtype)


def fine_distances_reference(t: torch.Tensor, deltas: torch.Tensor, weights: torch.Tensor, near: torch.Tensor,
                             count: int, u: torch.Tensor, padding: float = PADDING) -> torch.Tensor:
    """Slow reference for `fine_distances` at given positions u [R,count] in (0,1): per ray, the
    dilated masses and padded probabilities written out, then a walk along the bins."""
    out = torch.zeros(t.shape[0], count, dtype=torch.float64)
    for r in range(t.shape[0]):
        samples = [float(v) for v in t[r]]
        lengths = [float(v) for v in deltas[r]]
        w = [max(float(v), 0.0) for v in weights[r]]
        edges = [float(near[r])] + samples + [samples[-1] + lengths[-1]]
        mass = [w[0]] + [max(w[k], w[k + 1]) if k + 1 < len(w) else w[k] for k in range(len(w))]
        spans = [max(edges[b + 1] - edges[b], 0.0) for b in range(len(mass))]
        total, span = sum(mass), sum(spans)
        if total > 1e-8:
            probability = [(1 - padding) * m / total + padding * s / span for m, s in zip(mass, spans)]
        else:
            probability = [s / span for s in spans]
        norm = sum(probability)
        for k in range(count):
            target, below = float(u[r, k]) * norm, 0.0
            for b, p in enumerate(probability):
                if target < below + p or b == len(probability) - 1:
                    fraction = min(max((target - below) / p, 0.0), 1.0) if p > 0 else 0.0
                    out[r, k] = edges[b] + fraction * (edges[b + 1] - edges[b])
                    break
                below += p
    return out

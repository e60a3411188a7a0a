"""Training losses. Each takes the rendered output and the batch, and returns a scalar."""

from __future__ import annotations

import torch

from ..prepare.masks import Region

# which region masks supervise which attention of the region deformation
ATTENTION_REGIONS = {
    "lip": (Region.MOUTH,),
    "eye": (Region.EYES,),
    "torso": (Region.NECK, Region.TORSO),
}


def region_mask(labels: torch.Tensor, regions) -> torch.Tensor:
    mask = torch.zeros_like(labels, dtype=torch.float32)
    for region in regions:
        mask = mask + (labels == int(region)).float()
    return mask


def photometric_loss(rgb: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, mouth_weight: float,
                     eye_weight: float = 0.0) -> torch.Tensor:
    """Mean squared error with extra weight on the mouth (lips carry the lip sync) and the eyes
    (a blink changes a few pixels: unweighted, it is lost in the face's error)."""
    weight = 1.0 + mouth_weight * (labels == int(Region.MOUTH)).float() + eye_weight * (labels == int(Region.EYES)).float()
    return (weight[:, None] * (rgb - target) ** 2).sum() / (3 * weight.sum())


def opacity_loss(opacity: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The rendered person's opacity should match the segmentation matte."""
    return ((opacity - alpha) ** 2).mean()


def attention_loss(attention_maps: dict[str, torch.Tensor], labels: torch.Tensor,
                   speech: torch.Tensor | None = None, free_neck: bool = False) -> torch.Tensor:
    """Each signal's rendered influence should fall inside its own region and nowhere else.
    `speech` (bool per ray): the lip signal's region is the mouth plus this (the lower face,
    `prepare.masks.lower_face_mask`, where it is not background) instead of the mouth alone.
    `free_neck`: the torso attention is asked for nothing on the neck band's rays (its mean is over
    the others), so that the images alone decide how much of the band follows the body: the band
    holds the jaw's underside, which turns with the head, as well as neck and collar."""
    total = torch.zeros((), device=labels.device)
    for name, regions in ATTENTION_REGIONS.items():
        if name in attention_maps:
            target = region_mask(labels, regions)
            if name == "lip" and speech is not None:  # the person's part of it: no attention to ask of empty space
                target = torch.maximum(target, (speech & (labels != int(Region.BACKGROUND))).float())
            squared = (attention_maps[name] - target) ** 2
            if name == "torso" and free_neck:
                kept = (labels != int(Region.NECK)).float()
                total = total + (squared * kept).sum() / kept.sum().clamp(min=1.0)
            else:
                total = total + squared.mean()
    return total


def batch_speech(batch: dict, device) -> torch.Tensor | None:
    """The batch's lower-face region, for `attention_loss`, where the sampler drew it
    (TrainConfig.lip_region "lower_face"); else None."""
    return batch["speech"].to(device) if "speech" in batch else None


DISPLACEMENT_UNIT_M = 0.01  # displacements are penalised in centimetres


def displacement_loss(extras: dict[str, torch.Tensor], unattended: bool = False) -> torch.Tensor:
    """Mean over rays of the rendered squared face-stage displacement, in cm²: what the face
    stage does should stay local (lips ~1 cm, a blink less); without it a default id01 run moved
    the face's points by a median 9 cm and scrambled the canonical space (docs/RESULTS.md,
    "Displacement"). 0 for models without a face stage (global deformation). `unattended`: only
    where neither the lip nor the eye attention is (each point weighted by (1 - a_lip)(1 - a_eye)),
    so that lips and lids stay free to move."""
    key = "displacement_unattended" if unattended else "displacement"
    if key not in extras:
        return torch.zeros(())
    return extras[key].mean() / DISPLACEMENT_UNIT_M**2


def distortion_loss(weights: torch.Tensor, distances: torch.Tensor, deltas: torch.Tensor, span: float) -> torch.Tensor:
    """Mean over rays of mip-NeRF 360's distortion loss: how spread out along the ray the rendered
    weight is. Each sample stands for the interval [t, t + delta]; in units of `span` (near..far),
    the loss is sum_ij w_i w_j |m_i - m_j| (m: interval midpoints) + 1/3 sum_i w_i^2 delta_i. It is
    least when the weight sits in one short interval: a thin surface. Linear in the samples (the
    pairwise sum by running sums, samples in ray order); `distortion_loss_reference` is the double
    loop. weights, distances, deltas: [R,S]."""
    mid = (distances + 0.5 * deltas) / span
    w = weights.float()
    mid = mid.float()
    weight_before = torch.cumsum(w, dim=1) - w  # sum of w_j for j < i
    moment_before = torch.cumsum(w * mid, dim=1) - w * mid  # sum of w_j m_j for j < i
    between = 2.0 * (w * (mid * weight_before - moment_before)).sum(1)
    within = (w**2 * (deltas.float() / span)).sum(1) / 3.0
    return (between + within).mean()


def distortion_loss_reference(weights: torch.Tensor, distances: torch.Tensor, deltas: torch.Tensor,
                              span: float) -> torch.Tensor:
    """Slow reference for `distortion_loss`: every pair of samples, ray by ray."""
    total = torch.zeros((), dtype=torch.float64)
    rays, samples = weights.shape
    for r in range(rays):
        w = weights[r].double()
        mid = (distances[r].double() + 0.5 * deltas[r].double()) / span
        for i in range(samples):
            for j in range(samples):
                total = total + w[i] * w[j] * (mid[i] - mid[j]).abs()
            total = total + w[i] ** 2 * deltas[r, i].double() / span / 3.0
    return total / rays


def psnr(mse: torch.Tensor | float) -> float:
    value = float(mse)
    return float("inf") if value <= 0 else -10.0 * torch.log10(torch.tensor(value)).item()

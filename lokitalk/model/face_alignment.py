"""Face alignment for multi-identity priors: each person's head frame bent so that their mouth,
chin and jaw sit where the prior's people have them on average.

The head frame is fitted to the template's rigid points (skull: forehead, nose, cheekbones), so
every person's skull lines up, but the lips and jaw sit where that person has them. The shared
canonical grid and deformation nets hold one mouth, so a person far from it has to move it by
their residual grid alone. The pretraining clips have their lips within -1.2 ... +1.6 mm of the
template sideways, id04 at +2.5 mm. Measured (docs/RESULTS.md, "10 s and all of a clip at `fast`
scale, and why id04's mouth sits aside: face alignment"): with 5 s of video id04 +0.84 / +0.88 dB
on two seeds at 1200 steps (level at 2400: a faster start), id05 level;
id04's mouth offset unchanged. Off by default (`pretrain --face-alignment`).

With alignment each identity keeps a few anchor points (its mean landmarks over its training
frames, in its head frame) and their offsets to the prior's mean anchors. A point x of that
person's head frame is moved by a smooth blend of the anchors' offsets (Gaussian weights of
width `sigma`, normalised where the anchors are dense, fading to nothing a few widths away from
the face) before the deformation nets read it, so every person's mouth lands on the shared one.
"""

from __future__ import annotations

import numpy as np
import torch

ALIGNMENT_SIGMA_M = 0.01  # Gaussian width of an anchor's pull (metres)
ANCHOR_COUNT = 80  # the outer lip loop plus points spread over the rest of the face


def anchor_ids(template, count: int = ANCHOR_COUNT) -> np.ndarray:
    """Template landmark ids of the anchors: the outer lip loop, then the landmarks farthest
    from those already chosen (deterministic), `count` in all; never the inner lip loop (it
    borders the mouth opening) or the irises (they follow the gaze)."""
    chosen = [int(i) for i in template.lips_outer]
    skip = np.concatenate([chosen, template.lips_inner, template.left_iris, template.right_iris])
    pool = np.setdiff1d(np.arange(len(template.vertices)), skip)
    points = template.vertices.astype(np.float64)
    distance = np.linalg.norm(points[pool, None] - points[chosen][None], axis=-1).min(1)
    while len(chosen) < count and len(pool):
        pick = int(np.argmax(distance))
        chosen.append(int(pool[pick]))
        distance = np.minimum(distance, np.linalg.norm(points[pool] - points[pool[pick]], axis=-1))
        distance[pick] = -1.0
    return np.asarray(chosen, dtype=np.int64)


def mean_anchor_points(landmarks: np.ndarray, valid: np.ndarray, frames: np.ndarray, template,
                       count: int = ANCHOR_COUNT) -> np.ndarray:
    """[count, 3] the anchors' mean position in the head frame (metres) over `frames` whose
    landmarks are trusted (all of `frames` if none is): each frame's 3-D landmarks
    similarity-fitted onto the template's rigid points, as the lip feature is measured."""
    from ..prepare.signals import align_to_head_frame

    frames = np.asarray(frames, dtype=np.int64)
    good = frames[np.asarray(valid, bool)[frames]]
    use = good if len(good) else frames
    aligned = align_to_head_frame(landmarks[use].astype(np.float64), template)
    return aligned[:, anchor_ids(template, count)].mean(0)


def alignment_offset(x: torch.Tensor, anchors: torch.Tensor, offsets: torch.Tensor,
                     sigma: float = ALIGNMENT_SIGMA_M) -> torch.Tensor:
    """[M,3] how far each point x [M,3] moves: sum_k w_k offsets_k / max(sum_k w_k, 1), with
    w_k = exp(-|x - anchors_k|^2 / 2 sigma^2). Near the face the weights sum past 1 and the
    offset is their weighted mean; far from it they fade, and so does the offset."""
    # float32 even under bf16 autocast: the expanded squared distance below cancels large terms
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, anchors, offsets = x.float(), anchors.float(), offsets.float()
        # |x|^2 - 2 x.a + |a|^2 as one matrix product: [M,K] without an [M,K,3] intermediate
        squared = ((x * x).sum(-1, keepdim=True) - 2.0 * x @ anchors.T
                   + (anchors * anchors).sum(-1)[None]).clamp_min(0.0)
        weights = torch.exp(squared * (-0.5 / sigma**2))
        total = weights.sum(-1, keepdim=True).clamp_min(1.0)
        return (weights @ offsets) / total


def alignment_offset_reference(x: np.ndarray, anchors: np.ndarray, offsets: np.ndarray,
                               sigma: float = ALIGNMENT_SIGMA_M) -> np.ndarray:
    """Slow reference: one point at a time, the formula as written."""
    out = np.zeros((len(x), 3))
    for m, point in enumerate(np.asarray(x, np.float64)):
        weights = np.array([np.exp(-np.sum((point - a) ** 2) / (2 * sigma**2)) for a in anchors])
        out[m] = (weights[:, None] * offsets).sum(0) / max(weights.sum(), 1.0)
    return out

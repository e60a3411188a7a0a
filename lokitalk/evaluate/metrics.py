"""Image and motion metrics for held-out frames, and the two trivial baselines they must beat.

All images are uint8 RGB [H,W,3]. PSNR is over all channels with a peak of 255; a mask limits it
to a region (mouth, eyes). The baselines use the same frames and split: the mean of the
training frames, and the training frame closest to each test frame (an oracle: it peeks).
"""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (pred.astype(np.float64) - real.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        diff = diff[mask]
    mse = diff.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, real: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred, real, channel_axis=2, data_range=255))


def landmark_distance(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> float:
    """Mean pixel distance between corresponding landmarks (LMD) over frames and `ids`."""
    return float(np.linalg.norm(pred[:, ids, :2] - real[:, ids, :2], axis=-1).mean())


def landmark_distance_per_frame(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[N]: LMD of each frame (their mean is `landmark_distance`)."""
    return np.linalg.norm(pred[:, ids, :2] - real[:, ids, :2], axis=-1).mean(axis=1)


def mouth_offset_and_shape(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LMD split in two, per frame [N]: how far the mouth's centroid is off (px), and the LMD of
    the landmarks once each mouth is moved onto its centroid (its shape: opening, width, lip
    sync). On turned heads a model can render the right lips a few pixels aside (its face
    surface off in depth: lokitalk.evaluate.geometry), which plain LMD cannot tell from bad lips."""
    p, r = pred[:, ids, :2].astype(np.float64), real[:, ids, :2].astype(np.float64)
    offset = p.mean(1) - r.mean(1)
    shape = np.linalg.norm((p - p.mean(1, keepdims=True)) - (r - r.mean(1, keepdims=True)), axis=-1).mean(1)
    return np.linalg.norm(offset, axis=-1), shape


def mouth_offset_and_shape_reference(pred: np.ndarray, real: np.ndarray, ids: np.ndarray) -> tuple[list, list]:
    """Slow reference: frame by frame, landmark by landmark."""
    offsets, shapes = [], []
    for p_frame, r_frame in zip(pred, real):
        cp = [sum(float(p_frame[i, a]) for i in ids) / len(ids) for a in (0, 1)]
        cr = [sum(float(r_frame[i, a]) for i in ids) / len(ids) for a in (0, 1)]
        offsets.append(((cp[0] - cr[0]) ** 2 + (cp[1] - cr[1]) ** 2) ** 0.5)
        distances = [((p_frame[i, 0] - cp[0] - r_frame[i, 0] + cr[0]) ** 2
                      + (p_frame[i, 1] - cp[1] - r_frame[i, 1] + cr[1]) ** 2) ** 0.5 for i in ids]
        shapes.append(sum(distances) / len(ids))
    return offsets, shapes


def mean_image_baseline(train_frames: np.ndarray, test_frames: np.ndarray) -> float:
    mean = train_frames.mean(0, dtype=np.float64)  # float64 sums without a float64 copy of every frame
    return float(np.mean([psnr(mean, t) for t in test_frames]))


def nearest_frame_indices(train_frames: np.ndarray, test_frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    """[N]: for each test frame, the index of the closest training frame (by MSE over all pixels);
    `nearest_frame_indices_reference` is the pair-by-pair reference."""
    train = train_frames.reshape(len(train_frames), -1).astype(np.float32)
    nearest = np.empty(len(test_frames), dtype=np.int64)
    for k, t in enumerate(test_frames.reshape(len(test_frames), -1).astype(np.float32)):
        best, best_index = np.inf, 0
        for start in range(0, len(train), chunk):
            errors = ((train[start:start + chunk] - t) ** 2).mean(1)
            j = int(errors.argmin())
            if errors[j] < best:  # strict: the first of equally close frames, as the reference
                best, best_index = float(errors[j]), start + j
        nearest[k] = best_index
    return nearest


def nearest_frame_indices_reference(train_frames: np.ndarray, test_frames: np.ndarray) -> np.ndarray:
    """Slow reference: every pair's MSE in float64."""
    return np.array([int(np.argmin([np.mean((tr.astype(np.float64) - te) ** 2) for tr in train_frames]))
                     for te in test_frames.astype(np.float64)], dtype=np.int64)


def nearest_frame_baseline(train_frames: np.ndarray, test_frames: np.ndarray, chunk: int = 64) -> float:
    """Mean over test frames of the PSNR of the closest training frame (by MSE)."""
    nearest = nearest_frame_indices(train_frames, test_frames, chunk)
    return float(np.mean([psnr(train_frames[j], t) for j, t in zip(nearest, test_frames)]))


def nearest_frame_baseline_reference(train_frames: np.ndarray, test_frames: np.ndarray) -> float:
    """Slow reference: every pair through `psnr`."""
    return float(np.mean([max(psnr(tr, te) for tr in train_frames) for te in test_frames]))


def region_error_budget(pred: np.ndarray, real: np.ndarray, labels: np.ndarray, names: dict[int, str]) -> dict:
    """Where the squared error of a set of frames lies, region by region.

    pred, real: uint8 [N,H,W,3]; labels: [N,H,W] region ids (those of `names`; others are
    counted under "other"). For each region: its share of the pixels, its share of the summed
    squared error, its own PSNR, and the mean per-frame PSNR the frames would have if that
    region were rendered perfectly (what fixing it is worth). Vectorised over frames;
    `region_error_budget_reference` is the frame-by-frame, region-by-region reference.
    """
    err = ((pred.astype(np.float64) - real.astype(np.float64)) ** 2).sum(-1)  # [N,H,W], summed over RGB
    pixels_per_frame = err[0].size
    frame_sse = err.reshape(len(err), -1).sum(1)
    known = np.isin(labels, list(names))
    groups = {name: labels == rid for rid, name in names.items()}
    if not known.all():
        groups["other"] = ~known
    total = frame_sse.sum()
    budget = {}
    for name, mask in groups.items():
        region_sse_per_frame = np.where(mask, err, 0.0).reshape(len(err), -1).sum(1)
        count = mask.sum()
        mse = region_sse_per_frame.sum() / (3 * count) if count else float("nan")
        without = (frame_sse - region_sse_per_frame) / (3 * pixels_per_frame)
        budget[name] = {
            "pixel_share": float(count / mask.size),
            "error_share": float(region_sse_per_frame.sum() / total) if total > 0 else 0.0,
            "psnr": _mse_to_psnr(mse),
            "psnr_if_perfect": float(np.mean([_mse_to_psnr(m) for m in without])),
        }
    return budget


def region_error_budget_reference(pred: np.ndarray, real: np.ndarray, labels: np.ndarray,
                                  names: dict[int, str]) -> dict:
    """Slow reference for `region_error_budget`: one frame and one region at a time through `psnr`."""
    known = np.isin(labels, list(names))
    groups = {name: [labels[i] == rid for i in range(len(labels))] for rid, name in names.items()}
    if not known.all():
        groups["other"] = [~known[i] for i in range(len(labels))]
    frame_sse = [((p.astype(np.float64) - r.astype(np.float64)) ** 2).sum() for p, r in zip(pred, real)]
    total = sum(frame_sse)
    budget = {}
    for name, masks in groups.items():
        sse, count, fixed_psnr = 0.0, 0, []
        for p, r, m in zip(pred, real, masks):
            region = ((p[m].astype(np.float64) - r[m].astype(np.float64)) ** 2).sum()
            sse += region
            count += int(m.sum())
            fixed = p.copy()
            fixed[m] = r[m]
            fixed_psnr.append(psnr(fixed, r))
        budget[name] = {
            "pixel_share": count / (len(labels) * labels[0].size),
            "error_share": sse / total if total > 0 else 0.0,
            "psnr": _mse_to_psnr(sse / (3 * count)) if count else float("nan"),
            "psnr_if_perfect": float(np.mean(fixed_psnr)),
        }
    return budget


def _mse_to_psnr(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

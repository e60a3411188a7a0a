"""The background plate: the scene behind the speaker, as one still image.

Per pixel it is the median colour over the frames where that pixel is background, which removes
the moving person wherever they ever moved away. Pixels that were always covered (typically
behind the torso) were never seen; they get a plausible smooth fill so that the plate has no
holes, and a mask says which they are so that nothing downstream trusts them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from lokitalk.prepare.masks import Region

# The hole fill solves at most this many unknowns at once (a sparse LU: ~0.15 s at this size);
# bigger holes are solved on a downscaled copy first.
_MAX_UNKNOWNS = 40_000
# Row chunks for the masked median keep its sort buffer below about this many bytes.
_CHUNK_BYTES = 64 << 20
_UNSEEN = 256  # sorts after every uint8 value


def sample_indices(n: int, max_samples: int) -> np.ndarray:
    """Up to max_samples frame indices spread evenly over 0..n-1 (first and last included)."""
    if n <= 0 or max_samples <= 0:
        return np.zeros(0, np.intp)
    return np.unique(np.round(np.linspace(0, n - 1, min(n, max_samples))).astype(np.intp))


def background_masks(labels: np.ndarray, erode_px: int) -> np.ndarray:
    """[S,H,W] bool: BACKGROUND pixels, eroded by erode_px so that blurred hair and shoulder
    edges (and the segmenter's soft border) do not bleed into the median. The image border is
    not eroded (cv2's default border value for erosion is +inf)."""
    bg = (np.asarray(labels) == Region.BACKGROUND).astype(np.uint8)
    if erode_px <= 0:
        return bg.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
    return np.stack([cv2.erode(m, kernel) for m in bg]).astype(bool)


def masked_median(frames: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel, per-channel median of frames [S,H,W,C] uint8 over the samples where valid
    [S,H,W] is true. Returns (median uint8 [H,W,C], count [H,W]); the median of an even count
    is the mean of the two middle values rounded half up; pixels with count 0 are 0.

    Vectorised: invalid samples become 256, which sorts after every real value, so after one
    sort along the sample axis the k valid values are the first k and the middle ones are at
    (k-1)//2 and k//2. `masked_median_reference` is the plain loop this must agree with.
    """
    s, h, w, c = frames.shape
    count = valid.sum(axis=0)
    out = np.zeros((h, w, c), np.uint8)
    rows = max(1, _CHUNK_BYTES // max(1, s * w * c * 2))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        v = frames[:, r0:r1].astype(np.uint16)
        v[~valid[:, r0:r1]] = _UNSEEN
        v.sort(axis=0)
        k = count[r0:r1][None, :, :, None]
        lo = np.take_along_axis(v, np.maximum(k - 1, 0) // 2, axis=0)[0]
        hi = np.take_along_axis(v, np.maximum(k, 0) // 2, axis=0)[0]
        med = (lo.astype(np.uint32) + hi + 1) // 2
        out[r0:r1] = np.where(k[0] > 0, med, 0).astype(np.uint8)
    return out, count


def masked_median_reference(frames: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obvious version of `masked_median` (a Python loop over pixels), for tests."""
    s, h, w, c = frames.shape
    out = np.zeros((h, w, c), np.uint8)
    count = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            seen = frames[valid[:, y, x], y, x].astype(np.float64)  # [k, C]
            count[y, x] = len(seen)
            if len(seen):
                out[y, x] = np.floor(np.median(seen, axis=0) + 0.5)
    return out, count


def harmonic_fill(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Solve Laplace's equation on the unknown pixels of values [H,W,C] (float), the other
    pixels fixed: every unknown pixel becomes the mean of its 4 neighbours (those inside the
    image). One sparse LU solve; every connected unknown region must touch a known pixel.
    """
    h, w = unknown.shape
    ys, xs = np.nonzero(unknown)
    n = len(ys)
    out = np.array(values, np.float64, copy=True)
    if n == 0:
        return out
    index = np.full((h, w), -1, np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols = [np.arange(n)], [np.arange(n)]
    diag = np.zeros(n)
    rhs = np.zeros((n, out.shape[2]))
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag += inside
        i, ny, nx = np.flatnonzero(inside), ny[inside], nx[inside]
        j = index[ny, nx]
        rows.append(i[j >= 0])
        cols.append(j[j >= 0])
        np.add.at(rhs, i[j < 0], out[ny[j < 0], nx[j < 0]])  # known neighbours: right-hand side
    data = np.concatenate([diag] + [-np.ones(len(r)) for r in rows[1:]])
    A = sp.csc_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out[ys, xs] = spla.splu(A).solve(rhs)
    return out


def fill_unseen(image: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """Fill the unseen pixels of an RGB uint8 image with a smooth continuation of the rest.

    A harmonic (membrane) fill: each unseen pixel is the mean of its neighbours. Why not
    cv2.inpaint: TELEA smears radial streaks and a pinwheel across big holes, while the
    harmonic fill is the smoothest continuation there is (no seams, no streaks) and it
    reproduces a linear lighting gradient exactly. Nothing here is "right" (those pixels were
    never seen); it has to be plausible, finite and seamless.

    Cost: one sparse solve; big holes are solved on a copy scaled down to at most
    _MAX_UNKNOWNS unseen pixels (with seen-pixel weights, so unseen garbage never mixes in),
    scaled back up, and then re-solved at full resolution only on a rim a few pixels deep, so
    that the coarse fill meets the real neighbours without a seam.
    """
    unseen = np.asarray(unseen, bool)
    if not unseen.any():
        return image.copy()
    if unseen.all():  # nothing to continue from
        return np.full_like(image, 128)
    factor = math.ceil(math.sqrt(unseen.sum() / _MAX_UNKNOWNS))
    if factor <= 1:
        filled = harmonic_fill(image, unseen)
    else:
        h, w = unseen.shape
        size = (math.ceil(w / factor), math.ceil(h / factor))
        seen = (~unseen).astype(np.float32)
        num = cv2.resize(image.astype(np.float32) * seen[..., None], size, interpolation=cv2.INTER_AREA)
        den = cv2.resize(seen, size, interpolation=cv2.INTER_AREA)
        small = num / np.maximum(den, 1e-6)[..., None]
        small = harmonic_fill(small, den < 1e-6).astype(np.float32)
        coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        filled = np.where(unseen[..., None], coarse, image).astype(np.float64)
        depth = cv2.distanceTransform(unseen.astype(np.uint8), cv2.DIST_L2, 3)
        filled = harmonic_fill(filled, unseen & (depth <= 2 * factor + 1))
    return np.clip(np.rint(filled), 0, 255).astype(np.uint8)


def background_plate(
    frames: np.ndarray, labels: np.ndarray, *, max_samples: int = 64, erode_px: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The scene behind the speaker from frames [N,H,W,3] uint8 and their region labels [N,H,W].

    Per pixel, the median colour over up to max_samples evenly spaced frames where the pixel is
    BACKGROUND after eroding the background by erode_px. Pixels never seen as background are
    filled by `fill_unseen`. Returns (plate uint8 [H,W,3], never_seen bool [H,W]).
    """
    frames = np.asarray(frames)
    labels = np.asarray(labels)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
    if labels.shape != frames.shape[:3]:
        raise ValueError(f"labels {labels.shape} do not match frames {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames")
    idx = sample_indices(len(frames), max_samples)
    valid = background_masks(labels[idx], erode_px)
    median, count = masked_median(frames[idx], valid)
    never_seen = count == 0
    return fill_unseen(median, never_seen), never_seen

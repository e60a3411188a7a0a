"""Conventions of the AD-NeRF / RAD-NeRF / ER-NeRF dataset layout and exact conversions to ours.

Everything here is a pure function or a constant; docs/NERF_FORMAT.md puts the two conventions
side by side. In short:

- Pose. Ours: X_cam = R X_head + t, OpenCV camera (x right, y down, z forward), head frame x to
  the image right, y down, z into the head, metres. Theirs (`transform_matrix`): camera-to-world,
  OpenGL camera (x right, y up, looking down -z), world = the tracked head with x to the image
  right, y up, z out of the face (towards a frontal camera), translation in the tracker's units
  (metres for their 3DMM tracker: it divides its decimetre translation by 10). Both frames are
  ours with y and z negated, so with F = diag(1, -1, -1):
      transform_matrix = [F R^T F | -F R^T t]      and back:  R = F M^T F,  t = -R F c.
  Sign flips and transposes are exact in floating point; only t picks up a rounding error.
- ER-NeRF's loader then applies `nerf_to_ngp` (below) with its own --scale/--offset; we store
  what the tracker convention says (metres, no offset) and leave that to their loader.
- Parsing images: head / neck / torso / background as pure colours, compared channel by
  channel on the array cv2.imread returns (BGR). Head is (255, 0, 0) in that array, so it looks
  blue in an image viewer; torso (0, 0, 255) looks red.
- 68 landmarks (iBUG-300W order) as `x y` pixel rows in `<i>.lms`; derived from our 478 by a
  fixed sparse linear map (`landmark_map_68`). The other way is not possible: import re-tracks.
- `au.csv`: OpenFace's AU45 (blink) intensity, 0..5, larger = more closed; read by column
  ' AU45_r' (OpenFace writes ", " separators, so the header names start with a space).
- Audio: `[N, 16, 29]` float arrays (DeepSpeech's shape: 16 windows of 20 ms x 29 logits).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..face_model import load_face_template
from ..prepare.masks import Region

# ----------------------------------------------------------------------------- layout

TRANSFORMS = {"train": "transforms_train.json", "val": "transforms_val.json"}
IMAGES_DIR = "ori_imgs"  # <i>.jpg frames and <i>.lms landmarks, i = img_id without padding
PARSING_DIR = "parsing"  # <i>.png
GT_DIR = "gt_imgs"  # <i>.jpg: the frame with its background replaced by bc.jpg
TORSO_DIR = "torso_imgs"  # <i>.png RGBA: torso and neck only
BACKGROUND = "bc.jpg"
AUDIO = "aud.wav"
AUDIO_FEATURES = ("aud_ds.npy", "aud.npy")  # ER-NeRF --asr_model deepspeech; AD-NeRF / default
AU_CSV = "au.csv"
AU45_COLUMN = " AU45_r"
EXTRA_DIR = "lokitalk_extra"  # LokiTalk-only sidecar; their loaders never look here
FPS = 25.0  # the format has no frame rate field: every tool in this family assumes 25 fps

# ----------------------------------------------------------------------------- poses

_SIGNS = np.array([1.0, -1.0, -1.0])  # F = diag(1, -1, -1): our axes -> theirs, for both frames


def nerf_transforms_from_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Our head->camera poses R [N,3,3], t [N,3] -> their camera-to-world `transform_matrix`
    [N,4,4] (float64)."""
    r = np.asarray(rotation, np.float64)
    t = np.asarray(translation, np.float64)
    rt = r.transpose(0, 2, 1)  # camera axes in head coordinates
    centre = -np.einsum("nij,nj->ni", rt, t)  # camera centre in head coordinates
    out = np.tile(np.eye(4), (len(r), 1, 1))
    out[:, :3, :3] = rt * _SIGNS[:, None] * _SIGNS[None, :]  # F R^T F: exact sign flips
    out[:, :3, 3] = centre * _SIGNS
    return out


def pose_from_nerf_transforms(matrices: np.ndarray, tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Their `transform_matrix` [N,4,4] -> our (R [N,3,3], t [N,3]) float64, the exact inverse of
    `nerf_transforms_from_pose`. Raises ValueError for a matrix that is not a rigid camera pose
    (the import turns that into a one-line InputError)."""
    m = np.asarray(matrices, np.float64)
    if m.ndim != 3 or m.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"transform matrices must be [N,4,4], got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("a transform_matrix has NaN or infinite values")
    rot = m[:, :3, :3]
    ortho = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((ortho > tolerance) | (np.linalg.det(rot) < 0))
    if len(bad):
        raise ValueError(f"transform_matrix #{bad[0]} is not a rotation plus a translation "
                         f"(R^T R deviates from I by {ortho[bad[0]]:.2g}, or det < 0)")
    rotation = (rot * _SIGNS[:, None] * _SIGNS[None, :]).transpose(0, 2, 1)
    centre = m[:, :3, 3] * _SIGNS
    translation = -np.einsum("nij,nj->ni", rotation, centre)
    return rotation, translation


def nerf_to_ngp(matrix: np.ndarray, scale: float = 1.0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """What ER-NeRF's / RAD-NeRF's loader does to a `transform_matrix` before casting rays
    (instant-ngp's convention): the camera's y and z axes are negated (OpenGL -> OpenCV camera:
    rays then go along +z through pixel centres), the world axes are relabelled (x, y, z) ->
    (y, z, x), and the camera position is multiplied by `scale` (their --scale, 4 by default)
    and shifted by `offset`. Here for documentation and tests; export does not apply it."""
    m = np.asarray(matrix, np.float64)
    relabel = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = np.eye(4)
    out[:3, :3] = relabel @ m[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    out[:3, 3] = relabel @ m[:3, 3] * scale + np.asarray(offset, np.float64)
    return out


# ----------------------------------------------------------------------------- parsing colours

# BGR triplets, as in the array that cv2.imread returns and cv2.imwrite takes.
PARSING_BGR: dict[Region, tuple[int, int, int]] = {
    Region.BACKGROUND: (255, 255, 255),
    Region.TORSO: (0, 0, 255),  # cloth; red in a viewer
    Region.NECK: (0, 255, 0),
    Region.HEAD: (255, 0, 0),  # face skin, brows, eyes, ears, nose, mouth, lips, hair, hat; blue in a viewer
}
_COARSE = {Region.BACKGROUND: Region.BACKGROUND, Region.TORSO: Region.TORSO, Region.NECK: Region.NECK,
           Region.HEAD: Region.HEAD, Region.FACE: Region.HEAD, Region.MOUTH: Region.HEAD, Region.EYES: Region.HEAD}


def coarse_regions(labels: np.ndarray) -> np.ndarray:
    """Our 7 region labels -> the 4 the parsing images can say (face, mouth, eyes -> head)."""
    lut = np.array([int(_COARSE[Region(i)]) for i in range(len(Region))], np.uint8)
    return lut[labels]


def parsing_from_labels(labels: np.ndarray) -> np.ndarray:
    """Region labels [H,W] -> parsing image [H,W,3] uint8 BGR (write it with cv2.imwrite)."""
    lut = np.array([PARSING_BGR[_COARSE[Region(i)]] for i in range(len(Region))], np.uint8)
    return lut[labels]


def regions_from_parsing(parsing_bgr: np.ndarray) -> np.ndarray:
    """Parsing image [H,W,3] BGR -> coarse Region labels [H,W] (BACKGROUND, TORSO, NECK, HEAD).

    Exact colours map exactly; any other colour (a resized or JPEG-compressed parsing map) goes
    to the nearest of the four, so a slightly damaged map still imports."""
    regions = list(PARSING_BGR)
    colours = np.array([PARSING_BGR[r] for r in regions], np.int32)
    pixels = np.asarray(parsing_bgr, np.int32)[..., :3]
    dist = ((pixels[..., None, :] - colours) ** 2).sum(-1)
    return np.array([int(r) for r in regions], np.uint8)[dist.argmin(-1)]


# ----------------------------------------------------------------------------- 68 landmarks


def _path(loop: np.ndarray, start: int, end: int, via: int) -> list[int]:
    """The landmark ids along a closed loop from `start` to `end`, in the direction passing `via`."""
    ids = list(loop)
    for step in (1, -1):
        i, out = ids.index(start), [start]
        while out[-1] != end:
            i = (i + step) % len(ids)
            out.append(ids[i])
        if via in out:
            return out
    raise ValueError(f"{via} is not between {start} and {end} on the loop")


def _along(ids: list[int], xy: np.ndarray, fractions) -> list[dict[int, float]]:
    """Points at `fractions` of the arc length of the polyline through `ids` (template x, y: the
    frontal view the 68-point annotation is defined on), each as weights on two landmarks."""
    pts = xy[ids]
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    out = []
    for f in fractions:
        s = float(f) * cum[-1]
        k = int(min(np.searchsorted(cum, s, side="right") - 1, len(ids) - 2))
        w = float(np.clip((s - cum[k]) / seg[k], 0.0, 1.0)) if seg[k] > 0 else 0.0
        out.append({ids[k]: 1.0 - w, ids[k + 1]: w})
    return out


def _at_height(chain: list[int], xy: np.ndarray, y: float) -> dict[int, float]:
    """The point of a top-to-bottom chain of landmarks at template height y."""
    ys = xy[chain, 1]
    k = int(np.clip(np.searchsorted(ys, y) - 1, 0, len(chain) - 2))
    w = float(np.clip((y - ys[k]) / (ys[k + 1] - ys[k]), 0.0, 1.0))
    return {chain[k]: 1.0 - w, chain[k + 1]: w}


@lru_cache(maxsize=1)
def landmark_map_68() -> np.ndarray:
    """[68, 478] weights: 68-point landmarks (iBUG-300W order, as face_alignment writes them)
    = weights @ our 478 face-mesh landmarks. Each row has one to four non-zero weights summing to 1.

    Derived from the face template, not from a table: contour points are spread at equal arc
    length along the mesh's own contours between the points the two annotations share (eye and
    mouth corners, lip and chin midpoints). Subject's right = image left for a frontal face.
    - 0-16 jaw: 17 points from the temple at eye level (127), round the chin (152), to 356;
    - 17-21, 22-26 brows: the centre line of each brow (mean of its upper and lower edge), from
      the image-left end to the image-right end of each brow;
    - 27-30 nose bridge: on the mesh's midline, from the height of the eye corners to the tip (4);
      31-35 nostrils: 98, 97, subnasale 2, 326, 327;
    - 36-41, 42-47 eyes: corners 33/133 and 362/263, lids at thirds of their length;
    - 48-59 outer lips: corners 61 and 291, sixths of the upper and lower contours;
    - 60-67 inner lips: corners 78 and 308, quarters of the upper and lower contours.
    """
    t = load_face_template()
    xy = t.vertices[:, :2].astype(np.float64)
    rows: list[dict[int, float]] = []
    jaw = _path(t.face_oval, 127, 356, via=152)
    rows += _along(jaw, xy, np.linspace(0, 1, 17))
    for brow in (t.right_eyebrow, t.left_eyebrow):  # image left first
        ids = np.asarray(brow)[np.argsort(xy[brow, 0])]  # sorted by x: pairs of (upper, lower) edge
        rows += [{int(a): 0.5, int(b): 0.5} for a, b in ids.reshape(5, 2)]
    corners_y = float(xy[[33, 133, 362, 263], 1].mean())
    bridge = [168, 6, 197, 195, 5, 4]
    rows += [_at_height(bridge, xy, y) for y in np.linspace(corners_y, xy[4, 1], 4)]
    rows += [{i: 1.0} for i in (98, 97, 2, 326, 327)]
    rows += [{33: 1.0}] + _along(_path(t.right_eye, 33, 133, via=159), xy, [1 / 3, 2 / 3])
    rows += [{133: 1.0}] + _along(_path(t.right_eye, 133, 33, via=145), xy, [1 / 3, 2 / 3])
    rows += [{362: 1.0}] + _along(_path(t.left_eye, 362, 263, via=386), xy, [1 / 3, 2 / 3])
    rows += [{263: 1.0}] + _along(_path(t.left_eye, 263, 362, via=374), xy, [1 / 3, 2 / 3])
    rows += _along(_path(t.lips_outer, 61, 291, via=0), xy, np.arange(7) / 6)  # 48-54
    rows += _along(_path(t.lips_outer, 291, 61, via=17), xy, np.arange(1, 6) / 6)  # 55-59
    rows += _along(_path(t.lips_inner, 78, 308, via=13), xy, np.arange(5) / 4)  # 60-64
    rows += _along(_path(t.lips_inner, 308, 78, via=14), xy, np.arange(1, 4) / 4)  # 65-67
    weights = np.zeros((68, len(t.vertices)))
    for k, row in enumerate(rows):
        for i, w in row.items():
            weights[k, i] += w
    return weights


def landmarks_68(landmarks: np.ndarray) -> np.ndarray:
    """Our landmarks [..., 478, 2 or 3] (pixels) -> [..., 68, 2] pixels (x, y)."""
    return np.einsum("kj,...jc->...kc", landmark_map_68(), np.asarray(landmarks, np.float64)[..., :2])


def write_lms(path: Path, points: np.ndarray) -> None:
    """One `x y` row per landmark, as np.loadtxt reads it back to [68, 2]."""
    np.savetxt(path, np.asarray(points, np.float64).reshape(-1, 2), fmt="%.6f")


# ----------------------------------------------------------------------------- eye signal: AU45

AU45_MAX = 5.0


def au45_from_eye_ratio(eye_ratio: np.ndarray, valid: np.ndarray | None = None,
                        open_quantile: float = 0.9) -> tuple[np.ndarray, float]:
    """Our eye ratio [N,2] (larger = more open) -> AU45 intensity [N] on OpenFace's 0..5 scale
    (larger = more closed) and the open-eye level it is relative to.

    AU45 = 5 * clip(1 - r / r_open, 0, 1) with r the mean of both eyes and r_open the clip's
    `open_quantile` of r: 0 for a fully open eye, 5 for a closed one; our blink threshold
    (r < 0.55 r_open) lands at AU45 > 2.25, past the 2 at which ER-NeRF's loader saturates."""
    r = np.asarray(eye_ratio, np.float64).mean(1)
    ref = r if valid is None or not np.any(valid) else r[np.asarray(valid, bool)]
    open_level = float(np.quantile(ref, open_quantile))
    return AU45_MAX * np.clip(1.0 - r / max(open_level, 1e-9), 0.0, 1.0), open_level


def write_au_csv(path: Path, au45: np.ndarray, success: np.ndarray, fps: float = FPS,
                 closed: np.ndarray | None = None) -> None:
    """OpenFace-style CSV with the columns the loaders read: row k is frame k (img_id k)."""
    closed = np.zeros(len(au45), bool) if closed is None else np.asarray(closed, bool)
    lines = ["frame, face_id, timestamp, confidence, success, AU45_r, AU45_c"]
    for k, (value, ok, c) in enumerate(zip(au45, success, closed)):
        lines.append(f"{k + 1}, 0, {k / fps:.3f}, {0.98 if ok else 0.0:.2f}, {int(bool(ok))}, "
                     f"{float(value):.4f}, {float(c):.1f}")
    Path(path).write_text("\n".join(lines) + "\n")


def read_au45(path: Path) -> np.ndarray:
    """The AU45 intensity column of an OpenFace CSV, row by row. Raises ValueError when there is
    none. Accepts the column with or without OpenFace's leading space."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError("empty file")
    names = [name.strip() for name in rows[0]]
    if AU45_COLUMN.strip() not in names:
        raise ValueError(f"no '{AU45_COLUMN}' column")
    col = names.index(AU45_COLUMN.strip())
    try:
        return np.array([float(row[col]) for row in rows[1:] if row], np.float64)
    except (ValueError, IndexError) as err:
        raise ValueError(f"unreadable '{AU45_COLUMN}' value ({err})") from err


# ----------------------------------------------------------------------------- audio features

DS_WINDOWS = 16  # DeepSpeech windows per video frame (20 ms each: 0.32 s of context)
DS_CHANNELS = 29  # DeepSpeech's character logits


def _pool(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Average contiguous groups along `axis` down to `size` entries (repeat entries if fewer)."""
    n = x.shape[axis]
    if n < size:
        return np.take(x, np.floor((np.arange(size) + 0.5) * n / size).astype(int), axis=axis)
    edges = np.round(np.linspace(0, n, size + 1)).astype(int)
    sums = np.add.reduceat(x, edges[:-1], axis=axis)
    shape = [1] * x.ndim
    shape[axis] = size
    return sums / np.diff(edges).reshape(shape)


def deepspeech_shaped(features: np.ndarray) -> np.ndarray:
    """Our per-frame audio windows [N, T, F] (log-mel: T=32 frames of 10 ms, F=80 bands) ->
    [N, 16, 29] float32: mean over pairs of 10 ms frames (DeepSpeech's 20 ms step, same 0.32 s
    centred window) and over 29 contiguous groups of mel bands. Shape-compatible with DeepSpeech
    features, not their content: a model trained on them learns from log-mel energies."""
    x = np.asarray(features, np.float32)
    if x.ndim != 3:
        raise ValueError(f"audio features must be [N, T, F], got {x.shape}")
    return _pool(_pool(x, 1, DS_WINDOWS), 2, DS_CHANNELS).astype(np.float32)

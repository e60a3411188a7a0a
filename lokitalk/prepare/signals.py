"""Driving signals from landmarks: eye ratio, blinks, mouth opening and the lip motion feature.

Every signal is measured on landmarks brought into the head's own frame (pose removed): each
frame's 3-D landmarks are aligned to the template's rigid points by a similarity transform, so
a turn of the head or a step towards the camera does not read as lip or eyelid motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face_model import FaceTemplate, polygon_area


@dataclass(frozen=True)
class SignalConfig:
    lip_components: int = 16
    blink_close_fraction: float = 0.55  # a blink starts below this fraction of the open-eye level
    blink_open_fraction: float = 0.75  # ... and ends above this one (hysteresis)
    blink_max_s: float = 0.7  # longer closures are not blinks (eyes shut, looking down)
    open_eye_window_s: float = 3.0  # the open-eye level is a running high percentile


@dataclass(frozen=True)
class LipBasis:
    """Linear basis of lip motion, shareable across identities.

    feature = (mouth points in the head frame, flattened) - neutral) @ components.T
    `neutral` is the identity's own resting (closed) mouth; `components` can come from another
    clip, so that identities share one lip-motion space.
    """

    point_ids: np.ndarray  # [M] landmark ids, outer lips then inner lips
    neutral: np.ndarray  # [3M]
    components: np.ndarray  # [K, 3M] orthonormal rows
    explained_variance: np.ndarray  # [K]

    def encode(self, mouth_points: np.ndarray) -> np.ndarray:
        flat = mouth_points.reshape(mouth_points.shape[0], -1)
        return (flat - self.neutral) @ self.components.T

    def decode(self, feature: np.ndarray) -> np.ndarray:
        flat = feature @ self.components + self.neutral
        return flat.reshape(feature.shape[0], -1, 3)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"point_ids": self.point_ids, "neutral": self.neutral,
                "components": self.components, "explained_variance": self.explained_variance}

    @classmethod
    def from_arrays(cls, arrays) -> "LipBasis":
        return cls(*(np.asarray(arrays[k]) for k in ("point_ids", "neutral", "components", "explained_variance")))


def align_to_head_frame(landmarks: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Similarity-align every frame's 3-D landmarks [N,478,3] onto the template's rigid points
    (Umeyama, batched over frames) and return them in the head frame, metres."""
    ids = template.rigid
    src = landmarks[:, ids].astype(np.float64)
    dst = template.vertices[ids].astype(np.float64)
    src_mean = src.mean(1, keepdims=True)
    dst_mean = dst.mean(0)
    src0, dst0 = src - src_mean, dst - dst_mean
    cov = np.matmul(dst0.T[None], src0) / len(ids)  # [N,3,3]
    u, sing, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.matmul(u, vt)))
    fix = np.ones((len(landmarks), 3))
    fix[:, 2] = d
    rot = np.matmul(u * fix[:, None, :], vt)
    var_src = (src0**2).sum((1, 2)) / len(ids)
    scale = (sing * fix).sum(1) / var_src
    moved = scale[:, None, None] * np.matmul(landmarks - src_mean, rot.transpose(0, 2, 1)) + dst_mean
    return moved


def align_to_head_frame_reference(landmarks: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Slow reference: one frame at a time, least-squares similarity by explicit SVD."""
    out = np.empty_like(landmarks, dtype=np.float64)
    dst = template.vertices[template.rigid].astype(np.float64)
    for n, frame in enumerate(landmarks.astype(np.float64)):
        src = frame[template.rigid]
        mu_s, mu_d = src.mean(0), dst.mean(0)
        a, b = src - mu_s, dst - mu_d
        u, s, vt = np.linalg.svd(b.T @ a)
        sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        r = u @ sign @ vt
        c = np.trace(np.diag(s) @ sign) / (a**2).sum()
        out[n] = c * (frame - mu_s) @ r.T + mu_d
    return out


def eye_ratio(head_points: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Eyelid opening per eye: mean lid separation (eye polygon area / eye width) over eye width.
    Returns [N,2]: the subject's left eye, then right eye."""
    out = []
    for loop in (template.left_eye, template.right_eye):
        pts = head_points[:, loop, :2]
        width = pts[..., 0].max(1) - pts[..., 0].min(1)
        out.append(polygon_area(pts) / np.maximum(width, 1e-9) ** 2)
    return np.stack(out, 1)


def mouth_opening(head_points: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Mean gap between the lips in metres: inner-lip polygon area / mouth width."""
    inner = head_points[:, template.lips_inner, :2]
    outer = head_points[:, template.lips_outer, :2]
    width = outer[..., 0].max(1) - outer[..., 0].min(1)
    return polygon_area(inner) / np.maximum(width, 1e-9)


def detect_blinks(ratio: np.ndarray, fps: float, config: SignalConfig = SignalConfig()
                  ) -> list[tuple[int, int]]:
    """Blinks as (first, last) closed frame from a per-frame eye ratio (mean of both eyes).

    The open-eye level is a running 90th percentile (robust to slow changes such as looking
    down); a blink enters below `blink_close_fraction` of it and ends above
    `blink_open_fraction`; runs longer than `blink_max_s` are not counted.
    """
    n = len(ratio)
    half = max(1, int(config.open_eye_window_s * fps / 2))
    padded = np.pad(ratio, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)[:n]
    open_level = np.percentile(windows, 90, axis=1)
    blinks, start = [], None
    for i in range(n):
        if start is None and ratio[i] < config.blink_close_fraction * open_level[i]:
            start = i
        elif start is not None and ratio[i] > config.blink_open_fraction * open_level[i]:
            if (i - start) <= config.blink_max_s * fps:
                blinks.append((start, i - 1))
            start = None
    return blinks


def rest_mouth(mouth_points: np.ndarray, valid: np.ndarray | None = None, quantile: float = 0.2) -> np.ndarray:
    """The identity's resting mouth: the mean of the frames whose lips are the most closed
    (lowest `quantile` of inner-lip opening). Zero lip feature = this shape, for everyone.
    `mouth_points` [N,M,3] is the outer lip loop followed by the inner lip loop."""
    use = mouth_points if valid is None else mouth_points[valid]
    inner = use[:, use.shape[1] // 2:, :2]
    opening = polygon_area(inner)
    closed = opening <= np.quantile(opening, quantile)
    return use[closed].reshape(int(closed.sum()), -1).mean(0)


def fit_lip_basis(mouth_points: np.ndarray, template: FaceTemplate, components: int,
                  valid: np.ndarray | None = None) -> LipBasis:
    """Principal directions of the mouth's motion away from its rest shape (uncentred PCA about
    the rest mouth, so the first component includes the typical opening while speaking)."""
    flat = mouth_points.reshape(len(mouth_points), -1)
    use = flat if valid is None else flat[valid]
    neutral = rest_mouth(mouth_points, valid)
    _, sing, vt = np.linalg.svd(use - neutral, full_matrices=False)
    k = min(components, vt.shape[0])
    variance = sing[:k] ** 2 / max(len(use) - 1, 1)
    return LipBasis(template.mouth_points.astype(np.int32), neutral, vt[:k], variance)


def rebase_lip_basis(shared: LipBasis, mouth_points: np.ndarray, valid: np.ndarray | None = None) -> LipBasis:
    """Use a shared basis (e.g. from other identities) with this identity's own rest mouth."""
    return LipBasis(shared.point_ids, rest_mouth(mouth_points, valid), shared.components,
                    shared.explained_variance)

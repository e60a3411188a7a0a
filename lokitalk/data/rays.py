"""Rays in the head frame, and batches of rays (or patches) with their per-frame conditioning.

The head is static in its own frame and the camera moves (docs/CONVENTIONS.md): the ray through
pixel (x, y) of frame n starts at the camera centre c_n = -R_n^T t_n and points along
R_n^T K^-1 [x + 0.5, y + 0.5, 1]^T (pixel centres; OpenCV axes), normalised. Everything a model
needs for those pixels travels in the batch (colour, matte, region label, frame index, the
frame's driving signals), never as state patched onto the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .avatar import Avatar, blink_frames, resize_image


def pixel_rays(rotation: np.ndarray, translation: np.ndarray, focal: float, cx: float, cy: float,
               xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's pose (head -> camera) and integer pixel coordinates [M] -> head-frame ray
    origins [M,3] and unit directions [M,3]."""
    cam_dirs = np.stack([(xs + 0.5 - cx) / focal, (ys + 0.5 - cy) / focal, np.ones_like(xs, dtype=np.float64)], -1)
    dirs = cam_dirs @ rotation  # (R^T d)^T = d^T R
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = -rotation.T @ translation
    return np.broadcast_to(origin, dirs.shape).copy(), dirs


def frame_rays(rotation: torch.Tensor, translation: torch.Tensor, focal: float, cx: float, cy: float,
               width: int, height: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel of a frame, row-major, built on `device` (no host work per frame when
    rendering on a GPU) -> origins [H*W,3], unit directions [H*W,3], float32. Same maths as
    `pixel_rays`, in float64 until the end."""
    rot = torch.as_tensor(rotation, dtype=torch.float64, device=device)
    trans = torch.as_tensor(translation, dtype=torch.float64, device=device)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float64),
                            torch.arange(width, device=device, dtype=torch.float64), indexing="ij")
    cam_dirs = torch.stack([(xs.reshape(-1) + 0.5 - cx) / focal, (ys.reshape(-1) + 0.5 - cy) / focal,
                            torch.ones(height * width, dtype=torch.float64, device=device)], -1)
    dirs = cam_dirs @ rot
    dirs = dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)
    origin = -rot.T @ trans
    return origin.expand_as(dirs).float(), dirs.float()


def pixel_rays_reference(rotation, translation, focal, cx, cy, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: one pixel, by inverting the projection with explicit matrices."""
    k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1.0]])
    cam_to_head = np.linalg.inv(np.vstack([np.hstack([rotation, translation[:, None]]), [0, 0, 0, 1]]))
    d_cam = np.linalg.solve(k, np.array([x + 0.5, y + 0.5, 1.0]))
    d = cam_to_head[:3, :3] @ d_cam
    return cam_to_head[:3, 3], d / np.linalg.norm(d)


@dataclass(frozen=True)
class RayBatchConfig:
    rays_per_batch: int = 4096
    patch_size: int = 0  # > 0: square patches (for LPIPS) instead of scattered rays
    mouth_fraction: float = 0.25  # share of rays drawn inside the mouth region (lip detail)
    image_scale: float = 1.0  # train on frames resized by this factor (0.5: a quarter of the rays)
    eye_fraction: float = 0.0  # share of rays drawn inside the eye region (blinks are a few pixels)
    # at least this share of batches comes from frames inside a blink: in a short clip blinks
    # are ~8 % of the frames, too few for the eye ratio's effect to be learned as deep as it
    # really is. A floor, not an extra: a clip that blinks more often is drawn uniformly
    blink_frame_fraction: float = 0.0
    # share of rays drawn with probability proportional to the frame's gradient magnitude: the
    # test error of a trained model sits at edges (silhouette, collar, hairline; the evaluation's
    # error budget), which uniform rays rarely hit
    edge_fraction: float = 0.0
    # with each batch also "speech": the lower face (prepare.masks.lower_face_mask), the region
    # the lip attention is tied to when TrainConfig.lip_region is "lower_face"
    speech_region: bool = False
    # with patches: each patch's centre is drawn from the pixels of these regions (prepare.masks.Region
    # values), the patch then shifted to fit the frame; empty: anywhere (12 of 50 patches drawn on
    # 256-px id01 frames held no person pixel at all: background plate, where LPIPS has nothing to teach)
    patch_regions: tuple[int, ...] = ()


def edge_strength(rgb: np.ndarray) -> np.ndarray:
    """[H,W] float: the grey image's Sobel gradient magnitude plus 1 % of its mean, so that
    every pixel keeps some chance (a flat frame becomes uniform)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    return magnitude + 0.01 * magnitude.mean() + 1e-6


class RaySampler:
    """Draws training batches from an avatar's frames (train split only by default)."""

    def __init__(self, avatar: Avatar, config: RayBatchConfig = RayBatchConfig(), frames: np.ndarray | None = None,
                 seed: int = 0):
        self.avatar = avatar
        self.config = config
        self.frames = avatar.split.train if frames is None else np.asarray(frames)
        self.blink_frames = blink_frames(avatar, self.frames)
        self.rng = np.random.default_rng(seed)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._edge_cdf: dict[int, np.ndarray] = {}
        self._speech: dict[int, np.ndarray] = {}
        self.camera = avatar.camera.scaled(config.image_scale)
        self.background = resize_image(avatar.background(), self.camera).astype(np.float32) / 255.0

    def _images(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in self._cache:
            if len(self._cache) > 256:  # bounded memory: frames are re-read from disk when evicted
                evicted = next(iter(self._cache))
                self._cache.pop(evicted)
                self._edge_cdf.pop(evicted, None)
                self._speech.pop(evicted, None)
            cam = self.camera
            self._cache[index] = (resize_image(self.avatar.frame(index), cam), resize_image(self.avatar.alpha(index), cam),
                                  resize_image(self.avatar.labels(index), cam, nearest=True))
        return self._cache[index]

    def _edges(self, index: int) -> np.ndarray:
        """Cumulative distribution over the frame's pixels (row-major), proportional to its
        gradient magnitude (`edge_strength`)."""
        if index not in self._edge_cdf:
            cdf = np.cumsum(edge_strength(self._images(index)[0]).ravel())
            self._edge_cdf[index] = cdf / cdf[-1]
        return self._edge_cdf[index]

    def _speech_region(self, index: int) -> np.ndarray:
        if index not in self._speech:
            from ..face_model import load_face_template
            from ..prepare.masks import lower_face_mask

            scale = self.camera.width / self.avatar.camera.width
            points = self.avatar.landmarks[index, :, :2] * scale
            self._speech[index] = lower_face_mask((self.camera.height, self.camera.width), points, load_face_template())
        return self._speech[index]

    def _pixels(self, labels: np.ndarray, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        h, w = labels.shape
        n = self.config.rays_per_batch
        if self.config.patch_size > 0:
            x0, y0 = self._patch_corner(labels)
            p = self.config.patch_size
            ys, xs = np.mgrid[y0:y0 + p, x0:x0 + p]
            return xs.ravel(), ys.ravel()
        from ..prepare.masks import Region

        # region rays are drawn with replacement: a small mouth or eye still gets its share
        xs_parts, ys_parts, drawn = [], [], 0
        for region, fraction in ((Region.MOUTH, self.config.mouth_fraction), (Region.EYES, self.config.eye_fraction)):
            region_y, region_x = np.nonzero(labels == region)
            count = int(n * fraction) if len(region_x) and fraction > 0 else 0
            pick = self.rng.integers(0, len(region_x), count) if count else np.zeros(0, int)
            xs_parts.append(region_x[pick])
            ys_parts.append(region_y[pick])
            drawn += count
        if self.config.edge_fraction > 0 and index is not None:
            count = int(n * self.config.edge_fraction)
            flat = np.minimum(np.searchsorted(self._edges(index), self.rng.random(count), side="right"), h * w - 1)
            ys_parts.append(flat // w)
            xs_parts.append(flat % w)
            drawn += count
        xs = np.concatenate(xs_parts + [self.rng.integers(0, w, n - drawn)])
        ys = np.concatenate(ys_parts + [self.rng.integers(0, h, n - drawn)])
        return xs, ys

    def _patch_corner(self, labels: np.ndarray) -> tuple[int, int]:
        """Top-left corner of a square patch: uniform over the frame, or centred on a pixel drawn
        from `patch_regions` (uniform when the frame has none of them)."""
        h, w = labels.shape
        p = self.config.patch_size
        if self.config.patch_regions:
            region_y, region_x = np.nonzero(np.isin(labels, self.config.patch_regions))
            if len(region_x):
                pick = self.rng.integers(0, len(region_x))
                x0 = int(np.clip(region_x[pick] - p // 2, 0, w - p))
                y0 = int(np.clip(region_y[pick] - p // 2, 0, h - p))
                return x0, y0
        return int(self.rng.integers(0, w - p + 1)), int(self.rng.integers(0, h - p + 1))

    def blink_draw_probability(self) -> float:
        """The chance of drawing straight from the blink frames, such that blink frames make up
        `blink_frame_fraction` of all draws (the uniform draws add their natural share)."""
        natural = len(self.blink_frames) / len(self.frames)
        floor = self.config.blink_frame_fraction
        if not len(self.blink_frames) or floor <= natural:
            return 0.0
        return (floor - natural) / (1.0 - natural)

    def _draw_frame(self) -> int:
        extra = self.blink_draw_probability()
        # no extra random draw when 0: runs without it replay exactly as before it existed
        if extra > 0 and self.rng.random() < extra:
            return int(self.rng.choice(self.blink_frames))
        return int(self.rng.choice(self.frames))

    def sample(self, frame: int | None = None) -> dict[str, torch.Tensor]:
        """One batch from one frame (rays of a frame share its conditioning)."""
        a = self.avatar
        index = self._draw_frame() if frame is None else int(frame)
        rgb, alpha, labels = self._images(index)
        xs, ys = self._pixels(labels, index)
        cam = self.camera
        origins, dirs = pixel_rays(a.rotation[index], a.translation[index], cam.focal_px, cam.cx, cam.cy, xs, ys)
        extra = {"speech": torch.from_numpy(self._speech_region(index)[ys, xs])} if self.config.speech_region else {}
        return {
            **extra,
            "origins": torch.from_numpy(origins).float(),
            "directions": torch.from_numpy(dirs).float(),
            "rgb": torch.from_numpy(rgb[ys, xs].astype(np.float32) / 255.0),
            "background": torch.from_numpy(self.background[ys, xs]),
            "alpha": torch.from_numpy(alpha[ys, xs].astype(np.float32) / 255.0),
            "labels": torch.from_numpy(labels[ys, xs].astype(np.int64)),
            "pixels": torch.from_numpy(np.stack([xs, ys], -1)),
            "frame": torch.tensor(index),
            "eye_ratio": torch.from_numpy(a.eye_ratio[index].astype(np.float32)),
            "lip_feature": torch.from_numpy(a.lip_feature[index].astype(np.float32)),
            "audio": torch.from_numpy(a.audio_features[index].astype(np.float32)),
            "rotation": torch.from_numpy(a.rotation[index]).float(),
            "translation": torch.from_numpy(a.translation[index]).float(),
        }

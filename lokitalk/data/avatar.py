"""Read an avatar folder written by `lokitalk prepare` (layout: docs/AVATAR_FORMAT.md).

Arrays are loaded eagerly (they are small); frames, mattes and label maps are read on demand,
one frame at a time, so a 60 s clip does not have to fit in memory. Everything a model needs
per frame (pose, eye ratio, lip feature, audio window) is indexed by the same frame number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..prepare.audio_features import AudioFeatureSpec
from ..prepare.signals import LipBasis
from ..prepare.split import Split

AVATAR_FORMAT = "lokitalk-avatar/1"


@dataclass(frozen=True)
class Camera:
    focal_px: float
    cx: float
    cy: float
    width: int
    height: int

    def intrinsics(self) -> np.ndarray:
        return np.array([[self.focal_px, 0, self.cx], [0, self.focal_px, self.cy], [0, 0, 1]], np.float64)

    def scaled(self, scale: float) -> "Camera":
        """The same camera for images resized by `scale` (pixel-centre convention preserved)."""
        if scale == 1.0:
            return self
        width, height = int(round(self.width * scale)), int(round(self.height * scale))
        sx, sy = width / self.width, height / self.height
        return Camera(self.focal_px * sx, self.cx * sx, self.cy * sy, width, height)


def resize_image(image: np.ndarray, camera: "Camera", nearest: bool = False) -> np.ndarray:
    """Resize a full-size frame, matte or label map to `camera`'s size (area average, or nearest
    for labels)."""
    if image.shape[1] == camera.width and image.shape[0] == camera.height:
        return image
    return cv2.resize(image, (camera.width, camera.height),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


@dataclass(frozen=True)
class Avatar:
    root: Path
    summary: dict
    camera: Camera
    rotation: np.ndarray  # [N,3,3] head -> camera
    translation: np.ndarray  # [N,3]
    landmarks: np.ndarray  # [N,478,3] pixels (x, y) and relative depth
    valid: np.ndarray  # [N] frames with trusted landmarks
    eye_ratio: np.ndarray  # [N,2]
    mouth_opening: np.ndarray  # [N] metres
    lip_feature: np.ndarray  # [N,K]
    lip_basis: LipBasis
    blinks: np.ndarray  # [B,2] first and last frame of each blink
    audio_features: np.ndarray  # [N,window,n_mels] float16
    audio_spec: AudioFeatureSpec
    split: Split
    consent: dict | None = None  # avatar.json's consent block (lokitalk.provenance.consent), if any

    @property
    def num_frames(self) -> int:
        return len(self.rotation)

    @property
    def fps(self) -> float:
        return float(self.summary["fps"])

    def camera_to_head(self) -> np.ndarray:
        """[N,4,4] camera pose in the head frame (the head is static, the camera moves)."""
        out = np.tile(np.eye(4), (self.num_frames, 1, 1))
        rt = self.rotation.transpose(0, 2, 1)
        out[:, :3, :3] = rt
        out[:, :3, 3] = -np.einsum("nij,nj->ni", rt, self.translation)
        return out

    def frame(self, index: int) -> np.ndarray:
        return cv2.cvtColor(self._read("frames", index, ".jpg", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def alpha(self, index: int) -> np.ndarray:
        """Person matte, uint8 0..255."""
        return self._read("alpha", index, ".png", cv2.IMREAD_UNCHANGED)

    def labels(self, index: int) -> np.ndarray:
        """Region labels (lokitalk.prepare.masks.Region), uint8."""
        return self._read("masks", index, ".png", cv2.IMREAD_UNCHANGED)

    def background(self) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(self.root / "background.png")), cv2.COLOR_BGR2RGB)

    def audio(self) -> np.ndarray:
        from ..media.audio import load_audio

        return load_audio(self.root / "audio.wav", self.audio_spec.sample_rate)

    def audio_for_frames(self, first: int, last: int) -> np.ndarray:
        """The soundtrack under frames first..last (inclusive)."""
        hop = int(round(self.audio_spec.sample_rate / self.fps))
        return self.audio()[first * hop:(last + 1) * hop]

    def _read(self, kind: str, index: int, suffix: str, flag: int) -> np.ndarray:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1}")
        path = self.root / kind / f"{index:06d}{suffix}"
        image = cv2.imread(str(path), flag)
        if image is None:
            raise InputError(f"{path} is missing or unreadable: the avatar folder is damaged")
        return image


def load_avatar(root: str | Path) -> Avatar:
    root = Path(root)
    if not (root / "summary.json").exists():
        partial = root.with_name(root.name + ".partial")
        hint = f" ({partial} exists: run prepare again to finish it)" if partial.exists() else ""
        raise InputError(f"{root} is not a prepared avatar: no summary.json{hint}")
    meta = json.loads((root / "avatar.json").read_text())
    if meta.get("format") != AVATAR_FORMAT:
        raise InputError(f"{root}: avatar format {meta.get('format')!r}, this LokiTalk reads {AVATAR_FORMAT}")
    cam = json.loads((root / "camera.json").read_text())
    pose = np.load(root / "pose.npz")
    signals = np.load(root / "signals.npz")
    return Avatar(
        root=root, summary=json.loads((root / "summary.json").read_text()),
        camera=Camera(cam["focal_px"], cam["cx"], cam["cy"], cam["width"], cam["height"]),
        rotation=pose["rotation"].astype(np.float64), translation=pose["translation"].astype(np.float64),
        landmarks=np.load(root / "landmarks.npy"), valid=np.load(root / "valid.npy"),
        eye_ratio=signals["eye_ratio"], mouth_opening=signals["mouth_opening"],
        lip_feature=signals["lip_feature"], lip_basis=LipBasis.from_arrays(np.load(root / "lip_basis.npz")),
        blinks=signals["blinks"], audio_features=np.load(root / "audio_features.npy"),
        audio_spec=AudioFeatureSpec.load(root / "audio_features.json"),
        split=Split.from_json(json.loads((root / "split.json").read_text())),
        consent=meta.get("consent"),
    )


def training_frames(avatar, train_seconds: float | None) -> np.ndarray:
    """The train split's frames, or only those in its first `train_seconds` (the test split,
    the last part of the clip, is the same whatever the budget)."""
    frames = np.asarray(avatar.split.train)
    if train_seconds is None:
        return frames
    keep = frames[frames < frames[0] + int(round(train_seconds * avatar.fps))]
    if len(keep) < 2:
        raise InputError(f"train_seconds={train_seconds} leaves fewer than 2 training frames")
    return keep


def blink_frames(avatar, frames: np.ndarray, margin: int = 1) -> np.ndarray:
    """The frames of `frames` that lie inside one of the avatar's detected blinks, widened by
    `margin` frames either side (the closing and opening frames carry the blink too)."""
    frames = np.asarray(frames)
    inside = np.zeros(avatar.num_frames, bool)
    for first, last in np.asarray(avatar.blinks, int).reshape(-1, 2):
        inside[max(0, first - margin):last + margin + 1] = True
    return frames[inside[frames]]

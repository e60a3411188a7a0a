"""Every per-frame driving signal of a spoken video, before anything is rendered.

The NeRF is conditioned per frame on the avatar's lip feature, the eye ratio and the head pose
(the camera). `plan_drive` makes all three for new speech (lips from `lips`, eyes from
`blinks`, pose from `head_motion`); they are small arrays (~100 bytes a frame), so a long
speech's plan fits in memory while its frames are rendered and written one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.avatar import Avatar
from .blinks import blink_style, blink_track
from .config import SpeakConfig
from .head_motion import Motion, head_motion, reference_frames
from .lips import LipDriver, lip_driver, predicted_opening


@dataclass
class Drive:
    lip_feature: np.ndarray  # [N,K] the avatar's own lip feature
    eye_ratio: np.ndarray  # [N,2]
    motion: Motion  # rotation [N,3,3], translation [N,3]
    shared: np.ndarray  # [N,K'] Audio2Motion's prediction in the shared space (after style)
    opening: np.ndarray  # [N] predicted mouth opening (metres)
    blinks: list[tuple[int, int]]
    lips: LipDriver

    @property
    def num_frames(self) -> int:
        return len(self.lip_feature)

    def conditioning(self, index: int) -> dict:
        return frame_conditioning(self.lip_feature[index], self.eye_ratio[index], self.motion.rotation[index],
                                  self.motion.translation[index])


def frame_conditioning(lip_feature: np.ndarray, eye_ratio: np.ndarray, rotation: np.ndarray,
                       translation: np.ndarray) -> dict:
    """One frame's signals as the renderer takes them."""
    import torch

    return {"eye_ratio": torch.from_numpy(np.asarray(eye_ratio, np.float32)),
            "lip_feature": torch.from_numpy(np.asarray(lip_feature, np.float32)),
            "rotation": torch.from_numpy(np.asarray(rotation)).float(),
            "translation": torch.from_numpy(np.asarray(translation)).float()}


def plan_drive(avatar: Avatar, audio: np.ndarray, num_frames: int, config: SpeakConfig = SpeakConfig(),
               device: str = "cpu", lips: LipDriver | None = None, lip_gain: float = 1.0) -> Drive:
    """Signals for `num_frames` frames of `audio` (16 kHz mono, already trimmed to them);
    `lip_gain` scales the lip features about their training mean (lokitalk.speak.lip_gain)."""
    rng = np.random.default_rng(config.seed)
    lips = lips or lip_driver(avatar, config.adapt, config.audio2motion, device=device)
    shared = lips.shared_features(audio, num_frames, config.chunk_frames)
    motion = head_motion(avatar, num_frames, config.head_motion, rng, config.segment_s, config.blend_s)
    if config.head_motion == "reference":
        frames = reference_frames(avatar, num_frames)
        eyes, blinks = avatar.eye_ratio[frames].astype(np.float32), []
    else:
        eyes, blinks = blink_track(num_frames, avatar.fps, blink_style(avatar), rng, config.blinks)
    return Drive(lips.lip_features(shared, lip_gain), eyes, motion, shared, predicted_opening(lips, shared), blinks, lips)

"""Speech -> this avatar's own lip feature, the signal its NeRF is conditioned on.

Audio2Motion predicts lip motion in the space shared by all identities (audio2motion/
shared_basis.py: offsets from a person's rest mouth, scaled to the template's mouth width).
Three steps bring it to one avatar:

    shared feature --decode_points(rest mouth, size of THIS person)--> 40 mouth points, head
    frame, metres --avatar.lip_basis.encode--> the avatar's own lip_feature (its PCA basis)

then each component is clamped to the range it takes on the training frames, widened by a
margin: the NeRF has never seen lip features outside it, and renders them badly.

Which Audio2Motion: the shipped multi-speaker model (`lokitalk/assets/audio2motion.safetensors`,
built by tools/build_audio2motion.py from ../shared/data), by default adapted to this person
(`audio2motion/adapt.py`: head fine-tuning and amplitude calibration on the avatar's own clip,
seconds on a CPU). If that file is missing, an Audio2Motion is trained from the avatar's own
clip alone (`own_clip_model`), which needs no other data but knows only one voice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..audio2motion.adapt import AdaptConfig, Style, adapt_to_identity, fit_style
from ..audio2motion.model import Audio2Motion, Audio2MotionConfig
from ..audio2motion.predict import predict_audio
from ..audio2motion.shared_basis import (avatar_mouth, decode_points, fit_shared_lip_basis, opening_from_mouth)
from ..audio2motion.train import MotionClip, TrainConfig, load_motion_clip, train_on_clips
from ..data.avatar import Avatar
from ..prepare.signals import LipBasis

RANGE_MARGIN = 0.15  # fraction of each component's training range allowed beyond it


@dataclass
class LipDriver:
    model: Audio2Motion
    basis: LipBasis  # the shared basis
    style: Style
    avatar: Avatar
    source: str  # "shipped", "shipped+adapted", "own clip"
    report: dict
    # log-mel (mean, variance) per band of the Audio2Motion's training audio (its file's
    # `audio_prior`), the prior of a stream's running normalisation; None: not in the file
    audio_prior: tuple[np.ndarray, np.ndarray] | None = None

    def shared_features(self, audio: np.ndarray, num_frames: int, chunk_frames: int = 500) -> np.ndarray:
        feats = predict_audio(self.model, audio, num_frames, self.avatar.fps, self.avatar.audio_spec, chunk_frames)
        return self.style.apply(feats)

    def mouth_points(self, shared: np.ndarray) -> np.ndarray:
        """[N,40,3] this person's mouth in the head frame (metres)."""
        return decode_points(np.ascontiguousarray(shared), avatar_mouth(self.avatar), self.basis)

    def lip_features(self, shared: np.ndarray, gain: float = 1.0) -> np.ndarray:
        """[N,K] the avatar's own lip_feature, scaled by `gain` about the training mean (a model's
        calibrated lip gain, lokitalk.speak.lip_gain), clamped to its training range (+ margin)."""
        feats = self.avatar.lip_basis.encode(self.mouth_points(shared))
        if gain != 1.0:
            from .lip_gain import scale_about, training_mean

            feats = scale_about(feats, training_mean(self.avatar), gain)
        lo, hi = training_range(self.avatar)
        return np.clip(feats, lo, hi).astype(np.float32)


def valid_training_frames(avatar: Avatar) -> np.ndarray:
    """The train split's frames where the face was found."""
    frames = np.asarray(avatar.split.train, int)
    return frames[avatar.valid[frames]]


def training_range(avatar: Avatar) -> tuple[np.ndarray, np.ndarray]:
    feats = avatar.lip_feature[valid_training_frames(avatar)].astype(np.float64)
    lo, hi = feats.min(0), feats.max(0)
    pad = RANGE_MARGIN * (hi - lo)
    return lo - pad, hi + pad


def own_clip_model(avatar: Avatar, steps: int = 800) -> tuple[Audio2Motion, LipBasis, MotionClip]:
    """Fallback: an Audio2Motion trained on the avatar's own training frames only."""
    basis = fit_shared_lip_basis([avatar], 16)
    clip = load_motion_clip(avatar, basis)
    k = basis.components.shape[0]
    model, _ = train_on_clips([clip], basis, TrainConfig(steps=steps, batch_size=64),
                              Audio2MotionConfig(components=k, window=clip.windows.shape[1],
                                                 n_mels=clip.windows.shape[2]))
    return model, basis, clip


def lip_driver(avatar: Avatar, adapt: bool = True, model_path=None, adapt_config: AdaptConfig = AdaptConfig(),
               device: str = "cpu", own_steps: int = 800) -> LipDriver:
    from ..audio2motion.io import SHIPPED, load_audio2motion, load_audio_prior

    path = model_path if model_path is not None else SHIPPED
    if model_path is None and not SHIPPED.is_file():
        print(f"warning: {SHIPPED} missing: training Audio2Motion on this avatar's own clip only", file=sys.stderr)
        model, basis, clip = own_clip_model(avatar, own_steps)
        style, report = fit_style(model, basis, clip, adapt_config)
        return LipDriver(model.to(device), basis, style, avatar, "own clip", report)
    model, basis, info = load_audio2motion(path)
    prior = load_audio_prior(path)
    if not adapt:
        return LipDriver(model.to(device), basis, Style.identity(basis.components.shape[0]), avatar, "shipped",
                         {"model_info": info}, prior)
    clip = load_motion_clip(avatar, basis)
    adapted, style, report = adapt_to_identity(model, basis, clip, adapt_config)
    report.pop("history", None)
    report["model_info"] = info
    return LipDriver(adapted.to(device), basis, style, avatar, "shipped+adapted", report, prior)


def predicted_opening(driver: LipDriver, shared: np.ndarray) -> np.ndarray:
    """Mouth opening (metres) of the predicted mouth, the same measure as signals' mouth_opening."""
    return opening_from_mouth(driver.mouth_points(shared))

"""What `speak` can be told: one typed dataclass, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEAD_MOTION_MODES = ("replay", "still", "reference")


@dataclass(frozen=True)
class SpeakConfig:
    # head and torso motion (lokitalk.speak.head_motion):
    #   replay    - the person's own training motion, re-cut into segments that never loop (default)
    #   still     - one fixed pose (the training frame closest to the mean pose)
    #   reference - the test split's real poses and eye openings, in order (for evaluation against
    #               the real held-out frames; the audio must not be longer than the test split)
    head_motion: str = "replay"
    segment_s: tuple[float, float] = (2.0, 5.0)  # replayed segment lengths (uniform in this range)
    blend_s: float = 0.4  # cross-fade at each segment junction
    adapt: bool = True  # per-identity adaptation of Audio2Motion on the avatar's own clip
    audio2motion: Path | None = None  # an Audio2Motion file; None = the shipped model
    blinks: bool = True  # synthesise blinks at the person's own rate (False: eyes stay open)
    lip_gain: float | None = None  # None: the model's calibrated gain (lip_gain.json), 1.0 if none
    min_audio_s: float = 0.5
    chunk_frames: int = 500  # Audio2Motion chunk (bounded memory on long speech)
    seed: int = 0
    crf: int = 18
    sign_cert: Path | None = None  # C2PA: PEM chain and key (provenance/c2pa_sign.py; default: the
    sign_key: Path | None = None  # $LOKITALK_C2PA_CERT / $LOKITALK_C2PA_KEY environment, else unsigned)

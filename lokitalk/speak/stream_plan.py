"""Every per-frame driving signal of a live stream (`lokitalk stream`), frame by frame as the
audio arrives: lips from `StreamingLips` (stream_lips.py), eyes from `BlinkStream` (blinks.py),
head and torso from the `replay` segments of head_motion.py planned one at a time, or `still`.
Frame k's signals depend only on the audio and the seed, not on how the audio was cut into
pieces (tests/test_stream.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.avatar import Avatar
from ..errors import InputError
from .blinks import BlinkStream, blink_style
from .config import SpeakConfig
from .drive import frame_conditioning
from .head_motion import ReplayPlanner, still_pose
from .lips import LipDriver
from .stream_lips import StreamingLips, StreamLipsConfig

STREAM_HEAD_MOTION = ("replay", "still")


class PoseStream:
    """Head poses frame by frame: `replay` segments planned as they are needed, or `still`."""

    def __init__(self, avatar: Avatar, config: SpeakConfig, rng: np.random.Generator):
        if config.head_motion not in STREAM_HEAD_MOTION:
            raise InputError(f"a stream's head motion is replay or still, not {config.head_motion!r} ('reference' "
                             "replays the test split: use `speak`)")
        self.planner = ReplayPlanner(avatar, rng, config.segment_s, config.blend_s) \
            if config.head_motion == "replay" else None
        self.still = still_pose(avatar)
        self.rotation = np.zeros((0, 3, 3))
        self.translation = np.zeros((0, 3))
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        self.segments = 0

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        if self.planner is None:
            return np.repeat(self.still[0][None], count, 0), np.repeat(self.still[1][None], count, 0)
        while len(self.rotation) < count:
            _, rot, tr = self.planner.next_segment(self.last)
            self.last = (rot[-1], tr[-1])
            self.rotation = np.concatenate([self.rotation, rot])
            self.translation = np.concatenate([self.translation, tr])
            self.segments += 1
        rot, tr = self.rotation[:count], self.translation[:count]
        self.rotation, self.translation = self.rotation[count:], self.translation[count:]
        return rot, tr


@dataclass
class StreamedFrame:
    index: int
    conditioning: dict  # the renderer's per-frame signals (as Drive.conditioning)
    opening: float  # predicted mouth opening (metres)


class StreamPlanner:
    """Every per-frame driving signal of a live stream: push audio, take the frames that became
    final. Frame k's signals depend only on the audio and the seed, not on how the audio was cut
    into pieces (tests check)."""

    def __init__(self, avatar: Avatar, driver: LipDriver, config: SpeakConfig = SpeakConfig(), lip_gain: float = 1.0,
                 lips_config: StreamLipsConfig = StreamLipsConfig(), prior: tuple[np.ndarray, np.ndarray] | None = None):
        motion_rng, eye_rng = np.random.default_rng(config.seed).spawn(2)
        self.lips = StreamingLips(driver, lip_gain, lips_config, prior)
        self.eyes = BlinkStream(avatar.fps, blink_style(avatar), eye_rng, config.blinks)
        self.poses = PoseStream(avatar, config, motion_rng)

    def push(self, audio: np.ndarray) -> list[StreamedFrame]:
        self.lips.push(audio)
        return self._take()

    def finish(self) -> list[StreamedFrame]:
        self.lips.finish()
        return self._take()

    def _take(self) -> list[StreamedFrame]:
        lips = self.lips.take()
        if lips is None:
            return []
        n = len(lips.lip_feature)
        eyes = self.eyes.take(n)
        rotation, translation = self.poses.take(n)
        return [StreamedFrame(lips.first + i, frame_conditioning(lips.lip_feature[i], eyes[i], rotation[i],
                                                                  translation[i]), float(lips.opening[i]))
                for i in range(n)]

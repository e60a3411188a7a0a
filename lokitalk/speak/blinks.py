"""Eyes that live: blinks at the person's own rate, with the person's own blink shapes.

From the avatar's training frames (`blink_style`): the open-eye level of each eye (median eye
ratio outside blinks), the blink rate (blinks per second of training video) and a library of
the person's real blinks (the eye ratio over the blink and a frame either side, divided by the
open level; both eyes follow the deeper of the two, `bilateral`). `blink_track` then draws blink
times as a renewal process (gamma-distributed gaps, shape 3: more regular than Poisson, as real
blinks are, with a 0.5 s refractory gap) at that rate, and pastes a randomly chosen real blink
at each. Durations and depth are therefore
the person's own by construction. With no blink in the clip, a typical rate (17 per minute) and
a 4-frame raised-cosine blink are used. Between blinks the eyes stay at the open level, with
the slow, small variation measured on the clip (its std of the open-eye ratio, smoothed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..data.avatar import Avatar

DEFAULT_RATE_PER_S = 17.0 / 60.0
GAMMA_SHAPE = 3.0
REFRACTORY_S = 0.5


@dataclass(frozen=True)
class BlinkStyle:
    open_level: np.ndarray  # [2] eye ratio with the eyes open
    open_std: np.ndarray  # [2] spread of the open-eye ratio (slow variation)
    rate_per_s: float
    library: list[np.ndarray]  # each [L,2]: eye ratio / open level over one real blink (+1 frame either side)
    durations: np.ndarray  # [B] frames below the blink threshold, per real blink
    measured: bool  # False: defaults (no blink found in the clip)


def blink_style(avatar: Avatar) -> BlinkStyle:
    frames = np.asarray(avatar.split.train, int)
    frames = frames[avatar.valid[frames]]
    ratio = avatar.eye_ratio.astype(np.float64)
    in_train = np.zeros(avatar.num_frames, bool)
    in_train[frames] = True
    blinks = [(int(a), int(b)) for a, b in np.asarray(avatar.blinks).reshape(-1, 2) if in_train[a:b + 1].all()]
    closed = np.zeros(avatar.num_frames, bool)
    for a, b in blinks:
        closed[max(0, a - 1):b + 2] = True
    open_frames = frames[~closed[frames]]
    if len(open_frames) == 0:
        open_frames = frames
    level = np.median(ratio[open_frames], 0)
    spread = ratio[open_frames].std(0)
    library = []
    for a, b in blinks:
        lo, hi = max(0, a - 1), min(avatar.num_frames, b + 2)
        library.append(bilateral(np.clip(ratio[lo:hi] / level, 0.0, 1.2)))
    seconds = len(frames) / avatar.fps
    if not library:
        t = np.linspace(0, 1, 6)[1:-1]
        shape = 1.0 - 0.85 * np.sin(np.pi * t) ** 2
        return BlinkStyle(level, spread, DEFAULT_RATE_PER_S, [np.stack([shape, shape], 1)], np.array([2]), False)
    return BlinkStyle(level, spread, len(blinks) / seconds, library,
                      np.array([b - a + 1 for a, b in blinks]), True)


def bilateral(relative: np.ndarray) -> np.ndarray:
    """[L,2] eye ratio / open level over one blink -> both eyes following the deeper of the two.
    A spontaneous blink shuts both eyes together, but the face mesh sometimes follows only one
    lid down: on id05, 4 of 7 blinks read 0.53-0.62 of the open level on one eye while its frames
    show both eyes shut (docs/RESULTS.md, "Blinks close both eyes"). Pasting such a blink
    would command a half-open eye that the person never showed."""
    deeper = relative.min(1, keepdims=True)
    return np.repeat(deeper, relative.shape[1], 1)


def _first_blink_s(rate_per_s: float, rng: np.random.Generator) -> float:
    return rng.uniform(0, 1.0 / rate_per_s)  # a random phase of the rhythm


def _blink_gap_s(rate_per_s: float, rng: np.random.Generator) -> float:
    """Seconds from one blink's start to the next: refractory gap + gamma, mean 1 / rate."""
    gaps_scale = max(1.0 / rate_per_s - REFRACTORY_S, 0.05) / GAMMA_SHAPE
    return REFRACTORY_S + rng.gamma(GAMMA_SHAPE, gaps_scale)


def blink_times(num_frames: int, fps: float, rate_per_s: float, rng: np.random.Generator) -> np.ndarray:
    """Start frames of blinks: gamma renewal process at `rate_per_s`, random phase."""
    if rate_per_s <= 0:
        return np.zeros(0, int)
    t = _first_blink_s(rate_per_s, rng)
    starts = []
    while t * fps < num_frames:
        starts.append(int(t * fps))
        t += _blink_gap_s(rate_per_s, rng)
    return np.array(starts, int)


def blink_track(num_frames: int, fps: float, style: BlinkStyle, rng: np.random.Generator,
                blinks: bool = True) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """([num_frames, 2] eye ratio, [(first, last) frame of each pasted blink])."""
    drift = rng.normal(size=(num_frames, 2))
    if num_frames > 1:
        drift = gaussian_filter1d(drift, 0.5 * fps, axis=0, mode="nearest")
        drift /= max(float(drift.std()), 1e-9)
    relative = np.ones((num_frames, 2)) + 0.5 * drift * (style.open_std / np.maximum(style.open_level, 1e-9))
    placed = []
    if blinks:
        for start in blink_times(num_frames, fps, style.rate_per_s, rng):
            shape = style.library[int(rng.integers(len(style.library)))]
            stop = min(num_frames, start + len(shape))
            relative[start:stop] = np.minimum(relative[start:stop], shape[:stop - start])
            placed.append((int(start), int(stop - 1)))
    return (relative * style.open_level).astype(np.float32), placed


class BlinkStream:
    """`blink_track` for a stream of unknown length: eye ratios frame by frame, as they are
    needed. Blink times follow the same renewal process and the same library of the person's
    own blinks. The slow open-eye variation cannot be smoothed over the whole track and
    normalised afterwards as `blink_track` does, so it is an Ornstein-Uhlenbeck process with the
    same spread (unit variance, correlation time DRIFT_TAU_S). Frame k's value depends only on
    the seed and k: the same whatever the chunks the frames are asked for in (tests check)."""

    DRIFT_TAU_S = 0.5

    def __init__(self, fps: float, style: BlinkStyle, rng: np.random.Generator, blinks: bool = True):
        self.fps, self.style, self.blinks_on = fps, style, blinks and style.rate_per_s > 0
        self.drift_rng, self.blink_rng = rng.spawn(2)
        self.decay = float(np.exp(-1.0 / (self.DRIFT_TAU_S * fps)))
        self.drift = self.drift_rng.normal(size=2)  # the stationary distribution
        self.frame = 0
        self.next_start_s = _first_blink_s(style.rate_per_s, self.blink_rng) if self.blinks_on else np.inf
        self.pending: np.ndarray = np.zeros((0, 2))  # the rest of a blink in progress (relative)
        self.placed: list[tuple[int, int]] = []

    def take(self, count: int) -> np.ndarray:
        """The next `count` frames' eye ratios [count, 2]."""
        out = np.empty((count, 2))
        scale = 0.5 * self.style.open_std / np.maximum(self.style.open_level, 1e-9)
        for i in range(count):
            if self.frame > 0:
                noise = self.drift_rng.normal(size=2)
                self.drift = self.decay * self.drift + np.sqrt(1.0 - self.decay ** 2) * noise
            relative = 1.0 + self.drift * scale
            if self.blinks_on and int(self.next_start_s * self.fps) == self.frame:  # blink_times' start frame
                shape = self.style.library[int(self.blink_rng.integers(len(self.style.library)))]
                merged = np.ones((max(len(shape), len(self.pending)), 2))
                merged[:len(shape)] = shape
                merged[:len(self.pending)] = np.minimum(merged[:len(self.pending)], self.pending)
                self.pending = merged
                self.placed.append((self.frame, self.frame + len(shape) - 1))
                self.next_start_s += _blink_gap_s(self.style.rate_per_s, self.blink_rng)
            if len(self.pending):
                relative = np.minimum(relative, self.pending[0])
                self.pending = self.pending[1:]
            out[i] = relative * self.style.open_level
            self.frame += 1
        return out.astype(np.float32)

"""Blinks and head motion for new speech: the person's own rate and length, smooth, never a loop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from lokitalk.prepare.signals import detect_blinks
from lokitalk.prepare.split import temporal_split
from lokitalk.speak.blinks import blink_style, blink_track
from lokitalk.speak.head_motion import replay_motion, still_motion

FPS = 25.0


def fake_avatar(seconds: float = 40.0, blink_every_s: float = 3.0, blink_frames: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    eyes = np.full((n, 2), 0.28) + rng.normal(0, 0.005, (n, 2))
    starts = np.arange(int(FPS), n - 10, int(blink_every_s * FPS)) + rng.integers(-10, 10, 1)
    blinks = []
    for s in starts:
        eyes[s:s + blink_frames] = 0.06
        blinks.append((s, s + blink_frames - 1))
    euler = gaussian_filter1d(rng.normal(size=(n, 3)), 12, axis=0) * np.radians([40, 20, 10])
    rotation = Rotation.from_euler("yxz", euler).as_matrix()
    translation = np.array([0, 0, 0.6]) + gaussian_filter1d(rng.normal(size=(n, 3)), 12, axis=0) * 0.02
    return SimpleNamespace(root=Path("fake"), fps=FPS, num_frames=n, split=temporal_split(n), valid=np.ones(n, bool),
                           eye_ratio=eyes, blinks=np.array(blinks), rotation=rotation, translation=translation)


def test_blinks_have_the_person_s_rate_and_length():
    avatar = fake_avatar(blink_every_s=3.0, blink_frames=3)
    style = blink_style(avatar)
    assert style.measured and abs(style.rate_per_s - 1 / 3.0) < 0.03
    eyes, placed = blink_track(int(300 * FPS), FPS, style, np.random.default_rng(1))
    found = detect_blinks(eyes.mean(1), FPS)  # the same detector prepare uses
    rate = len(found) / 300.0
    assert abs(rate - style.rate_per_s) / style.rate_per_s < 0.2, (rate, style.rate_per_s)
    assert abs(np.mean([b - a + 1 for a, b in found]) - 3.0) <= 0.5
    assert len(placed) == len(found)
    gaps = np.diff([a for a, _ in found]) / FPS
    assert gaps.min() >= 0.5 and 0.2 < gaps.std() / gaps.mean() < 0.8  # neither metronome nor clusters


def test_a_blink_measured_on_one_lid_only_closes_both_eyes():
    # the face mesh followed the second lid only half way down in every other blink
    avatar = fake_avatar(blink_every_s=3.0, blink_frames=3)
    for n, (a, b) in enumerate(avatar.blinks):
        if n % 2:
            avatar.eye_ratio[a:b + 1, 1] = 0.17
    style = blink_style(avatar)
    for shape in style.library:
        np.testing.assert_array_equal(shape[:, 0], shape[:, 1])
        assert shape.min() < 0.3  # the deeper lid's depth (0.06 / 0.28), not the half-open one
    eyes, placed = blink_track(int(60 * FPS), FPS, style, np.random.default_rng(2))
    for a, b in placed:
        closed = eyes[a:b + 1].min(0) / style.open_level
        assert closed.max() < 0.3


def test_no_blinks_when_asked():
    eyes, placed = blink_track(500, FPS, blink_style(fake_avatar()), np.random.default_rng(0), blinks=False)
    assert placed == [] and eyes.min() > 0.2


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rel = np.einsum("nji,njk->nik", a, b)
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_replayed_head_motion_is_smooth_in_range_and_not_a_loop():
    avatar = fake_avatar(seconds=40.0)
    n = int(120 * FPS)  # three times longer than the clip
    motion = replay_motion(avatar, n, np.random.default_rng(3))
    assert motion.rotation.shape == (n, 3, 3) and motion.translation.shape == (n, 3)
    train = avatar.split.train
    real_step = angle_deg(avatar.rotation[train][1:], avatar.rotation[train][:-1]).max()
    step = angle_deg(motion.rotation[1:], motion.rotation[:-1])
    assert step.max() < 2.5 * real_step, (step.max(), real_step)  # no jumps at the junctions
    moved = np.abs(np.diff(motion.translation, axis=0)).max()
    assert moved < 2.5 * np.abs(np.diff(avatar.translation[train], axis=0)).max()
    # every output pose is close to some pose the model was trained on
    nearest = np.array([angle_deg(np.repeat(r[None], len(train), 0), avatar.rotation[train]).min()
                        for r in motion.rotation[::25]])
    assert nearest.max() < 3.0
    # not frozen, and not a loop: many segments from many different places, none back to back
    assert motion.rotation.std(0).max() > 0.05
    starts = [s for _, s, _ in motion.segments]
    assert len(motion.segments) >= 20 and len(set(starts)) == len(starts)
    assert all(not (a <= b < a + la) for (_, a, la), (_, b, _) in zip(motion.segments, motion.segments[1:]))
    assert all(src >= train[0] and src + length - 1 <= train[-1] for _, src, length in motion.segments)


def test_still_motion_holds_one_training_pose():
    avatar = fake_avatar()
    motion = still_motion(avatar, 30)
    assert np.allclose(motion.rotation, motion.rotation[0]) and motion.segments[0][1] in set(avatar.split.train)

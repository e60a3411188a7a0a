"""Head and torso motion for new speech: the person's own motion, re-cut so it never loops.

Choice and why. The head pose is the NeRF's camera and also drives the torso (stage 2 of the
deformation). A NeRF trained on seconds of one person renders well only near the poses it has
seen, and a pose generator learned from audio on ~20 short clips would be weakly determined and
drift out of that range (a frozen or a wobbling head, torso artefacts). So `replay` replays the
person's own *real* motion from the training frames, in segments of 2-5 s (`SpeakConfig.
segment_s`) chosen at random, never from a recently used stretch, preferring segments that
start near the pose where the previous one ended; at each junction the difference between the
two poses is blended away over `blend_s` (rotation by slerp, translation linearly, smoothstep
weights), so there is no jump and no visible loop. The motion is real motion of this person,
and it stays within the poses the model was trained on. It is not derived from the audio.

`still` holds the training pose closest to the mean; `reference` uses the test split's real
poses (with `eyes_reference`, its real eye openings) for measurement against the real frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..data.avatar import Avatar
from ..errors import InputError

CANDIDATES = 12  # random segment starts considered at each junction
RECENT = 4  # segments that a new one may not overlap
ANGLE_WEIGHT = 1.0  # pose distance = rotation angle (rad) + translation distance (m) / head size
HEAD_SIZE_M = 0.15


@dataclass(frozen=True)
class Motion:
    rotation: np.ndarray  # [N,3,3] head -> camera
    translation: np.ndarray  # [N,3]
    segments: list[tuple[int, int, int]]  # (first output frame, first source frame, length)
    mode: str


def usable_runs(avatar: Avatar, min_length: int) -> list[np.ndarray]:
    """Contiguous runs of valid training frames at least `min_length` long."""
    frames = np.asarray(avatar.split.train, int)
    frames = frames[avatar.valid[frames]]
    if len(frames) == 0:
        raise InputError(f"{avatar.root} has no valid training frames")
    cuts = np.where(np.diff(frames) != 1)[0] + 1
    runs = [r for r in np.split(frames, cuts) if len(r) >= min_length]
    return runs or [max(np.split(frames, cuts), key=len)]


def _pose_distance(r1: np.ndarray, t1: np.ndarray, r2: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Rotation angle between r1 and each of r2 [C,3,3] plus translation distance / head size."""
    rel = np.einsum("ij,cjk->cik", r1.T, r2)
    angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
    return ANGLE_WEIGHT * angle + np.linalg.norm(t2 - t1, axis=-1) / HEAD_SIZE_M


class ReplayPlanner:
    """The `replay` choice, one segment at a time: `replay_motion` asks for segments until a
    known length is filled, a live stream (lokitalk.speak.stream) asks for the next one whenever
    its frames run out. The same seed gives the same segments either way (all but a clip's last
    one, which `replay_motion` cuts to fit)."""

    def __init__(self, avatar: Avatar, rng: np.random.Generator, segment_s: tuple[float, float] = (2.0, 5.0),
                 blend_s: float = 0.4):
        self.avatar = avatar
        self.rng = rng
        self.lo_len, self.hi_len = (max(2, int(round(s * avatar.fps))) for s in segment_s)
        self.runs = usable_runs(avatar, self.lo_len)
        self.blend = max(1, int(round(blend_s * avatar.fps)))
        self.recent: list[tuple[int, int]] = []

    def next_segment(self, previous: tuple[np.ndarray, np.ndarray] | None, room: int | None = None
                     ) -> tuple[int, np.ndarray, np.ndarray]:
        """(first source frame, rotation [L,3,3], translation [L,3]) of the next segment, blended
        from `previous` (the last output pose, None at the start); at most `room` frames long."""
        avatar, rng = self.avatar, self.rng
        want = int(rng.integers(self.lo_len, self.hi_len + 1))
        fresh, stale = [], []  # candidate (start, length): not overlapping / overlapping recent use
        for _ in range(CANDIDATES * 3):
            run = self.runs[int(rng.integers(len(self.runs)))]
            length = min(want, len(run)) if room is None else min(want, len(run), room)
            start = int(run[int(rng.integers(0, len(run) - length + 1))])
            overlaps = any(start < b and a < start + length for a, b in self.recent)
            (stale if overlaps else fresh).append((start, length))
            if len(fresh) >= CANDIDATES:
                break
        cands = fresh or stale  # a very short clip may leave only recently used stretches
        if previous is None:
            start, length = cands[0]
        else:
            starts = np.array([c[0] for c in cands])
            dist = _pose_distance(previous[0], previous[1], avatar.rotation[starts], avatar.translation[starts])
            start, length = cands[int(np.argmin(dist))]
        src = np.arange(start, start + length)
        rot = avatar.rotation[src].copy()
        tr = avatar.translation[src].copy()
        if previous is not None:  # blend away the jump from the previous segment's last pose
            k = min(self.blend, length)
            w = 1.0 - _smoothstep(np.arange(1, k + 1) / (k + 1))  # 1 -> 0 over the blend
            delta = Rotation.from_matrix(previous[0] @ rot[0].T)
            slerp = Slerp([0.0, 1.0], Rotation.concatenate([Rotation.identity(), delta]))
            rot[:k] = np.einsum("nij,njk->nik", slerp(w).as_matrix(), rot[:k])
            tr[:k] += w[:, None] * (previous[1] - tr[0])
        self.recent = (self.recent + [(start, start + length)])[-RECENT:]
        return start, rot, tr


def replay_motion(avatar: Avatar, num_frames: int, rng: np.random.Generator,
                  segment_s: tuple[float, float] = (2.0, 5.0), blend_s: float = 0.4) -> Motion:
    planner = ReplayPlanner(avatar, rng, segment_s, blend_s)
    rot_out = np.empty((num_frames, 3, 3))
    tr_out = np.empty((num_frames, 3))
    segments: list[tuple[int, int, int]] = []
    pos = 0
    while pos < num_frames:
        previous = None if pos == 0 else (rot_out[pos - 1], tr_out[pos - 1])
        start, rot, tr = planner.next_segment(previous, room=num_frames - pos)
        length = len(rot)
        rot_out[pos:pos + length] = rot
        tr_out[pos:pos + length] = tr
        segments.append((pos, start, length))
        pos += length
    return Motion(rot_out, tr_out, segments, "replay")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def still_pose(avatar: Avatar) -> tuple[np.ndarray, np.ndarray, int]:
    """(rotation, translation, frame) of the training frame closest to the mean pose."""
    frames = np.concatenate(usable_runs(avatar, 1))
    mean_t = avatar.translation[frames].mean(0)
    mean_r = Rotation.from_matrix(avatar.rotation[frames]).mean().as_matrix()
    best = int(frames[np.argmin(_pose_distance(mean_r, mean_t, avatar.rotation[frames], avatar.translation[frames]))])
    return avatar.rotation[best], avatar.translation[best], best


def still_motion(avatar: Avatar, num_frames: int) -> Motion:
    rotation, translation, best = still_pose(avatar)
    return Motion(np.repeat(rotation[None], num_frames, 0), np.repeat(translation[None], num_frames, 0),
                  [(0, best, num_frames)], "still")


def reference_frames(avatar: Avatar, num_frames: int) -> np.ndarray:
    test = np.asarray(avatar.split.test, int)
    if num_frames > len(test):
        raise InputError(f"head motion 'reference' replays the {len(test)} test frames of {avatar.root.name} "
                         f"({len(test) / avatar.fps:.1f} s): the audio is longer ({num_frames / avatar.fps:.1f} s)")
    return test[:num_frames]


def reference_motion(avatar: Avatar, num_frames: int) -> Motion:
    frames = reference_frames(avatar, num_frames)
    return Motion(avatar.rotation[frames], avatar.translation[frames], [(0, int(frames[0]), num_frames)], "reference")


def head_motion(avatar: Avatar, num_frames: int, mode: str, rng: np.random.Generator,
                segment_s: tuple[float, float] = (2.0, 5.0), blend_s: float = 0.4) -> Motion:
    if mode == "replay":
        return replay_motion(avatar, num_frames, rng, segment_s, blend_s)
    if mode == "still":
        return still_motion(avatar, num_frames)
    if mode == "reference":
        return reference_motion(avatar, num_frames)
    raise InputError(f"head motion must be replay, still or reference, not {mode!r}")

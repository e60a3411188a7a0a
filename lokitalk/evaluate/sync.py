"""Lip-sync of a talking video, measured without SyncNet (no such weights exist offline).

- Offset: the same lag scan `prepare` uses to find a clip's audio-video offset
  (prepare/av_offset.py): the mouth opening measured on the video's own frames (face mesh,
  pose removed) against the speech-band energy of its soundtrack, high-passed, correlated over
  lags of +-0.4 s, refined to a fraction of a frame. Positive = the audio is late. A video in
  sync gives ~0 ms (a lead of the lips of up to a frame is normal speech); `peak_correlation`
  says how strongly the mouth follows the speech at that lag.
- LMD (when the video re-enacts known real frames, e.g. `speak --head-motion reference` with
  the identity's own held-out audio): mean pixel distance of the 40 mouth landmarks of video
  frame k to those of the real frame k, as `evaluate` computes it, plus the same distance in the
  head frame (pose removed, mm), which does not depend on the head pose.
- Mouth motion amplitude: the std of the measured mouth opening (mm), beside the person's real
  one when an avatar is given.

`lokitalk evaluate MODEL_DIR --video V [--against-test]` runs this on a rendered video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..prepare.av_offset import OffsetConfig, estimate_offset, speech_energy_db

FPS = 25.0
SAMPLE_RATE = 16000


def track_video(video: str | Path, fps: float = FPS) -> dict:
    """Face mesh on every frame of `video` at `fps`, streamed -> landmarks [N,478,3], valid [N],
    head-frame landmarks [N,478,3] (metres) and mouth opening [N] (metres)."""
    from ..face_model import load_face_template
    from ..media.video import iter_frames, probe_video
    from ..prepare.landmarks import LandmarkConfig, fill_gaps, track_landmarks
    from ..prepare.signals import align_to_head_frame, mouth_opening

    info = probe_video(video)
    points, detected = track_landmarks(iter_frames(video, fps))
    if not detected.any():
        raise InputError(f"{video}: no face found in any frame")
    points, valid = fill_gaps(points, detected, int(LandmarkConfig().max_gap_s * fps))
    template = load_face_template()
    head = align_to_head_frame(points.astype(np.float64), template)
    return {"landmarks": points, "valid": valid, "head": head, "opening": mouth_opening(head, template),
            "size": (info.width, info.height)}


def sync_offset(opening: np.ndarray, audio: np.ndarray, fps: float = FPS, sample_rate: int = SAMPLE_RATE,
                config: OffsetConfig = OffsetConfig()) -> dict:
    energy = speech_energy_db(audio, len(opening), fps, sample_rate)
    est = estimate_offset(opening, energy, fps, config)
    zero = int(np.argmin(np.abs(est.lags_s)))
    return {"offset_ms": round(est.offset_s * 1e3, 1), "peak_correlation": round(est.peak_correlation, 3),
            "correlation_at_0": round(float(est.correlations[zero]), 3), "confident": bool(est.confident),
            "max_lag_ms": round(config.max_lag_s * 1e3)}


def measure_sync(video: str | Path, audio: str | Path | np.ndarray | None = None, fps: float = FPS) -> dict:
    """Offset and peak correlation of `video` against its own soundtrack (or `audio`)."""
    from ..media.audio import load_audio

    track = track_video(video, fps)
    sound = audio if isinstance(audio, np.ndarray) else load_audio(audio if audio is not None else video, SAMPLE_RATE)
    result = {"video": str(video), "frames": int(len(track["opening"])),
              "face_frames": int(track["valid"].sum())}
    result.update(sync_offset(track["opening"], sound, fps))
    result["opening_std_mm"] = round(float(track["opening"].std() * 1e3), 3)
    return result | {"_track": track}


def landmark_errors(track: dict, avatar, frames: np.ndarray) -> dict:
    """Mouth LMD (px, at the video's size) and head-frame mouth error (mm) of the video's first
    len(frames) frames against the avatar's real `frames`."""
    from ..face_model import load_face_template
    from . import metrics

    template = load_face_template()
    n = min(len(frames), len(track["landmarks"]))
    frames = np.asarray(frames[:n], int)
    ok = track["valid"][:n] & avatar.valid[frames]
    if not ok.any():
        return {"lmd": None, "mouth_mm": None, "lmd_frames": 0}
    scale = track["size"][0] / avatar.camera.width
    real = avatar.landmarks[frames].astype(np.float64)
    real[..., :2] *= scale
    lmd = metrics.landmark_distance(track["landmarks"][:n][ok], real[ok], template.mouth_points)
    real_head = np.load(avatar.root / "signals.npz")["head_landmarks"][frames].astype(np.float64)
    mouth = template.mouth_points
    mm = float(np.linalg.norm(track["head"][:n][ok][:, mouth] - real_head[ok][:, mouth], axis=-1).mean() * 1e3)
    return {"lmd": round(float(lmd), 3), "mouth_mm": round(mm, 3), "lmd_frames": int(ok.sum())}


def evaluate_video(model_dir: str | Path, video: str | Path, audio: str | Path | None = None,
                   against_test: bool = False, write: bool = True) -> dict:
    """The lip-sync report of a video rendered from MODEL_DIR (`speak` or `render`); written to
    MODEL_DIR/eval/sync_<video stem>.json."""
    from ..data.avatar import load_avatar
    from ..render.loading import load_trained

    video = Path(video)
    if not video.is_file():
        raise InputError(f"{video} is not a video file")
    model_dir = Path(model_dir)
    trained = load_trained(model_dir, "cpu")
    avatar = load_avatar(trained.avatar_dir)
    result = measure_sync(video, audio)
    track = result.pop("_track")
    frames = np.asarray(avatar.split.train, int)
    frames = frames[avatar.valid[frames]]
    result["real_opening_std_mm"] = round(float(avatar.mouth_opening[frames].std() * 1e3), 3)
    result["amplitude_ratio"] = round(result["opening_std_mm"] / max(result["real_opening_std_mm"], 1e-9), 3)
    result.update(blink_stats(track, avatar))
    if against_test:
        test = np.asarray(avatar.split.test, int)
        if len(track["opening"]) > len(test):
            raise InputError(f"{video} has {len(track['opening'])} frames, the test split of {avatar.root.name} only "
                             f"{len(test)}: --against-test compares frame k with test frame k")
        result.update(landmark_errors(track, avatar, test))
    if write:
        out = model_dir / "eval"
        out.mkdir(exist_ok=True)
        tmp = out / f"sync_{video.stem}.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(out / f"sync_{video.stem}.json")
    return result


def blink_stats(track: dict, avatar=None, fps: float = FPS) -> dict:
    """Blinks found in the video (same detector as prepare) per minute and mean length (frames),
    beside the avatar's own (its training frames) when given."""
    from ..face_model import load_face_template
    from ..prepare.signals import detect_blinks, eye_ratio

    ratio = eye_ratio(track["head"], load_face_template()).mean(1)
    found = detect_blinks(ratio, fps)
    minutes = len(ratio) / fps / 60.0
    out = {"blinks": len(found), "blink_rate_per_min": round(len(found) / minutes, 1),
           "blink_frames_mean": round(float(np.mean([b - a + 1 for a, b in found])), 2) if found else None}
    if avatar is not None:
        train = np.asarray(avatar.split.train, int)
        own = [(a, b) for a, b in np.asarray(avatar.blinks).reshape(-1, 2) if a >= train[0] and b <= train[-1]]
        out["real_blink_rate_per_min"] = round(len(own) / (len(train) / avatar.fps / 60.0), 1)
        out["real_blink_frames_mean"] = round(float(np.mean([b - a + 1 for a, b in own])), 2) if own else None
    return out

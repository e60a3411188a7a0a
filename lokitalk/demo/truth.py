"""The synthetic subject as ground truth: how well `prepare` and `speak` recover what is known.

- `prepare_vs_truth`: head pose error in degrees (the subject's head only rolls, so yaw and pitch
  are truly constant), blink detection precision and recall, mouth-opening correlation.
- `mouth_opening_px` / `lip_sync`: the mouth opening a face tracker sees in any video, and how
  well it follows a known mouth track (Pearson r at the best lag within a few frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLINK_TOLERANCE_FRAMES = 1  # a detected blink matches a true one when their spans overlap within this
MAX_SYNC_LAG_FRAMES = 3  # lag searched when comparing a mouth track with the truth (+-120 ms at 25 fps)

# mediapipe face-mesh indices: inner lips at the centre, outer eye corners (scale)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
EYE_CORNERS = (33, 263)


def match_blinks(truth: list[tuple[int, int]] | np.ndarray, found: list[tuple[int, int]] | np.ndarray,
                 tolerance: int = BLINK_TOLERANCE_FRAMES) -> dict:
    """Precision and recall of detected blink spans against true ones (spans are inclusive
    (first, last) frames; a pair matches when they overlap once widened by `tolerance`)."""
    truth = [tuple(map(int, t)) for t in truth]
    found = [tuple(map(int, f)) for f in found]

    def hit(a, b) -> bool:
        return a[0] - tolerance <= b[1] and b[0] <= a[1] + tolerance

    true_found = sum(any(hit(t, f) for f in found) for t in truth)
    found_true = sum(any(hit(f, t) for t in truth) for f in found)
    return {"true_blinks": len(truth), "detected_blinks": len(found),
            "precision": found_true / len(found) if found else (1.0 if not truth else 0.0),
            "recall": true_found / len(truth) if truth else 1.0, "tolerance_frames": tolerance}


def prepare_vs_truth(avatar_dir: Path, truth: dict) -> dict:
    """Compare a prepared avatar of the synthetic subject with its ground truth.

    `truth`: head_roll_deg [N], mouth_opening [N], blink_frames [B,2] (as saved by the demo).
    Pose errors are after removing each angle's mean over the clip (the portrait's own head pose
    is not known exactly, only how it moves)."""
    from ..data.avatar import load_avatar

    avatar = load_avatar(avatar_dir)
    euler = np.load(Path(avatar_dir) / "pose.npz")["euler_deg"].astype(np.float64)  # yaw, pitch, roll
    n = min(len(euler), len(truth["head_roll_deg"]))
    euler = euler[:n] - euler[:n].mean(axis=0)
    roll_truth = np.asarray(truth["head_roll_deg"][:n], np.float64)
    roll_truth = roll_truth - roll_truth.mean()
    # yaw and pitch are constant in the truth; roll is planted
    err = np.abs(np.stack([euler[:, 0], euler[:, 1], euler[:, 2] - roll_truth], axis=1))
    mouth_truth = np.asarray(truth["mouth_opening"][:n], np.float64)
    mouth = np.asarray(avatar.mouth_opening[:n], np.float64)
    blinks = match_blinks(np.asarray(truth["blink_frames"]).reshape(-1, 2), avatar.blinks)
    return {
        "frames": int(n),
        "pose_error_deg": {"mean": float(err.mean()), "p95": float(np.percentile(err, 95)),
                           "yaw_mean": float(err[:, 0].mean()), "pitch_mean": float(err[:, 1].mean()),
                           "roll_mean": float(err[:, 2].mean())},
        "roll_correlation": float(np.corrcoef(euler[:, 2], roll_truth)[0, 1]),
        "blinks": blinks,
        "mouth_correlation": float(np.corrcoef(mouth, mouth_truth)[0, 1]),
    }


def mouth_opening_px(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip gap at the centre of the mouth / outer-eye-corner distance, per frame, as the face
    mesh sees it -> (opening [N] (NaN where no face), detected [N])."""
    from ..prepare.landmarks import track_landmarks

    points, detected = track_landmarks(frames)
    gap = np.linalg.norm(points[:, UPPER_INNER_LIP, :2] - points[:, LOWER_INNER_LIP, :2], axis=1)
    eyes = np.linalg.norm(points[:, EYE_CORNERS[0], :2] - points[:, EYE_CORNERS[1], :2], axis=1)
    opening = np.where(detected, gap / np.maximum(eyes, 1e-6), np.nan)
    return opening.astype(np.float64), detected


def lip_sync(measured: np.ndarray, truth: np.ndarray, max_lag: int = MAX_SYNC_LAG_FRAMES) -> dict:
    """Pearson r between a measured mouth opening and the true track, at lag 0 and at the best lag
    in [-max_lag, max_lag] frames (positive: the video's mouth moves later than the truth)."""
    n = min(len(measured), len(truth))
    m, t = np.asarray(measured[:n], np.float64), np.asarray(truth[:n], np.float64)
    ok = np.isfinite(m) & np.isfinite(t)

    def r_at(lag: int) -> float:
        if lag >= 0:
            a, b, k = m[lag:], t[: n - lag], ok[lag:] & ok[: n - lag]
        else:
            a, b, k = m[: n + lag], t[-lag:], ok[: n + lag] & ok[-lag:]
        if k.sum() < 3 or a[k].std() == 0 or b[k].std() == 0:
            return float("nan")
        return float(np.corrcoef(a[k], b[k])[0, 1])

    scores = {lag: r_at(lag) for lag in range(-max_lag, max_lag + 1)}
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    best = max(finite, key=finite.get) if finite else 0
    return {"r": scores[0], "best_r": finite.get(best, float("nan")), "best_lag_frames": int(best),
            "frames": int(ok.sum())}

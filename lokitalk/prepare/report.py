"""What a person looks at to judge a preparation: a contact sheet and a plot of the signals.

- `contact_sheet.png`: evenly sampled frames; top row the frame with landmarks (lips red,
  eyes cyan, irises yellow, the rest white) and the head's axes from the fitted pose and camera
  (x red, y green, z blue, 8 cm long); bottom row the region labels over the frame.
- `signals.png`: eye ratio per eye with detected blinks shaded, mouth opening against speech
  energy, head pose angles, and the audio-video lag scan; the held-out test frames are shaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..face_model import load_face_template
from .masks import overlay

AXIS_LENGTH_M = 0.08


def _project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: dict) -> np.ndarray:
    cam = points @ rotation.T + translation
    return cam[:, :2] / np.maximum(cam[:, 2:3], 1e-6) * camera["focal_px"] + np.array([camera["cx"], camera["cy"]])


def draw_frame(image: np.ndarray, landmarks: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
               camera: dict) -> np.ndarray:
    template = load_face_template()
    out = image.copy()
    scale = max(1, image.shape[0] // 256)
    colours = np.full((len(landmarks), 3), 255, np.uint8)
    colours[template.mouth_points] = (255, 60, 60)
    colours[np.concatenate([template.left_eye, template.right_eye])] = (60, 220, 255)
    colours[np.concatenate([template.left_iris, template.right_iris])] = (255, 230, 0)
    for (x, y), c in zip(landmarks[:, :2], colours):
        cv2.circle(out, (int(round(x)), int(round(y))), scale, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    axes = np.array([[0, 0, 0], [AXIS_LENGTH_M, 0, 0], [0, AXIS_LENGTH_M, 0], [0, 0, AXIS_LENGTH_M]])
    pts = _project(axes, rotation, translation, camera)
    origin = tuple(int(v) for v in pts[0].round())
    for end, colour in zip(pts[1:], [(255, 0, 0), (0, 200, 0), (40, 90, 255)]):
        cv2.line(out, origin, tuple(int(v) for v in end.round()), colour, 2 * scale, cv2.LINE_AA)
    return out


def contact_sheet(avatar_dir: Path, frames: np.ndarray, labels: np.ndarray, fps: float, count: int = 8,
                  tile: int = 256) -> Path:
    landmarks = np.load(avatar_dir / "landmarks.npy")
    pose = np.load(avatar_dir / "pose.npz")
    camera = json.loads((avatar_dir / "camera.json").read_text())
    signals = np.load(avatar_dir / "signals.npz")
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    columns = []
    for i in picks:
        top = draw_frame(frames[i], landmarks[i], pose["rotation"][i], pose["translation"][i], camera)
        bottom = overlay(frames[i], labels[i])
        col = np.concatenate([cv2.resize(top, (tile, tile), interpolation=cv2.INTER_AREA),
                              cv2.resize(bottom, (tile, tile), interpolation=cv2.INTER_NEAREST)], axis=0)
        yaw, pitch, roll = pose["euler_deg"][i]
        text = [f"#{i} t={i / fps:.1f}s", f"eyes {signals['eye_ratio'][i].mean():.2f} "
                f"mouth {signals['mouth_opening'][i] * 1000:.1f}mm",
                f"yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}"]
        header = np.full((46, tile, 3), 255, np.uint8)
        for k, line in enumerate(text):
            cv2.putText(header, line, (4, 13 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.concatenate([header, col], axis=0))
        columns.append(np.full((columns[-1].shape[0], 4, 3), 255, np.uint8))
    sheet = np.concatenate(columns[:-1], axis=1)
    path = avatar_dir / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def signals_plot(avatar_dir: Path, fps: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..media.audio import load_audio
    from .av_offset import speech_energy_db

    signals = np.load(avatar_dir / "signals.npz")
    pose = np.load(avatar_dir / "pose.npz")
    offset = np.load(avatar_dir / "av_offset.npz")
    split = json.loads((avatar_dir / "split.json").read_text())
    n = len(signals["eye_ratio"])
    t = np.arange(n) / fps
    audio = load_audio(avatar_dir / "audio.wav")
    energy = speech_energy_db(audio, n, fps, 16000)

    fig, axes = plt.subplots(5, 1, figsize=(12, 11), constrained_layout=True)
    ax = axes[0]
    ax.plot(t, signals["eye_ratio"][:, 0], lw=0.8, label="left eye")
    ax.plot(t, signals["eye_ratio"][:, 1], lw=0.8, label="right eye")
    for a, b in signals["blinks"]:
        ax.axvspan(a / fps, (b + 1) / fps, color="orange", alpha=0.3, lw=0)
    ax.set_ylabel("eye ratio")
    ax.set_title(f"eyelid opening ({len(signals['blinks'])} blinks shaded)")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    ax.plot(t, signals["mouth_opening"] * 1000, color="crimson", lw=0.8)
    ax.set_ylabel("mouth opening (mm)", color="crimson")
    twin = ax.twinx()
    twin.plot(t, np.maximum(energy, energy.max() - 50), color="gray", lw=0.6, alpha=0.8)
    twin.set_ylabel("speech energy (dB)", color="gray")
    ax.set_title("mouth opening and speech energy (after the applied audio offset)")
    ax = axes[2]
    for k, name in enumerate(["yaw", "pitch", "roll"]):
        ax.plot(t, pose["euler_deg"][:, k], lw=0.8, label=name)
    ax.set_ylabel("degrees")
    ax.set_title("head pose")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    feature = signals["lip_feature"]
    for k in range(min(3, feature.shape[1])):
        ax.plot(t, feature[:, k], lw=0.7, label=f"lip PC{k + 1}")
    ax.set_title("lip motion feature (first components)")
    ax.legend(loc="upper right", fontsize=8)
    for ax in axes[:4]:
        ax.axvspan(split["test"][0] / fps, n / fps, color="gray", alpha=0.15, lw=0)
        ax.set_xlim(0, n / fps)
        ax.set_xlabel("time (s)")
    ax = axes[4]
    ax.plot(offset["lags_s"] * 1000, offset["correlations"], marker="o", ms=3)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel("audio lag (ms, positive: audio late)")
    ax.set_ylabel("correlation")
    ax.set_title("audio-video lag scan: mouth opening vs speech energy (before correction)")
    path = avatar_dir / "signals.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

"""Lip gain: make a trained model's rendered lips move as much as the person's real ones.

A NeRF renders the lips with less motion than its lip feature asks for (0.4-0.9 of the real
amplitude in docs/RESULTS.md), more so the less it is trained; lip features planned from speech
are smoother than real ones, and lose more of their motion on the way (0.5-0.7 of the real
amplitude with a gain measured on real features). `calibrate_lip_gain` measures the whole path
on the model's own *training* frames: it drives them with the lip features `speak` plans from
their own soundtrack (`drive="speech"`, the default; `"real"` uses the prepared lip features),
scaled about the training mean by each candidate gain, renders them, tracks the rendered mouth
with the same face mesh as `prepare`, and compares the mouth opening's spread with the real
person's on the same frames. It picks the smallest gain that reaches `target` of the real
amplitude, or else the largest gain whose rendered opening still follows the commanded one
(correlation within `max_r_drop` of gain 1's: beyond the trained range the lips start to move
wrongly rather than more). The result goes to MODEL_DIR/lip_gain.json, and `speak` applies it
to the lip features it plans. Test frames are never used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

GAIN_FILE = "lip_gain.json"


@dataclass(frozen=True)
class LipGainConfig:
    frames: int = 40  # training frames rendered per gain (evenly spread over the train split)
    gains: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0)
    target: float = 0.95  # amplitude ratio that counts as "moves as much as the real lips"
    max_r_drop: float = 0.05  # largest loss of correlation with the commanded opening a gain may cost
    drive: str = "speech"  # lip features planned from the frames' own audio ("speech") or prepared ("real")


def scale_about(features: np.ndarray, mean: np.ndarray, gain: float) -> np.ndarray:
    """Lip features scaled about the training mean: the rest mouth stays, the motion grows."""
    return (mean + gain * (features - mean)).astype(np.float32)


def training_mean(avatar) -> np.ndarray:
    from .lips import valid_training_frames

    return avatar.lip_feature[valid_training_frames(avatar)].astype(np.float64).mean(0)


def _opening(points: np.ndarray) -> np.ndarray:
    from ..face_model import load_face_template
    from ..prepare.signals import align_to_head_frame, mouth_opening

    template = load_face_template()
    return mouth_opening(align_to_head_frame(points, template), template)


def choose_gain(gains, amplitude, correlation, config: LipGainConfig) -> float:
    """The smallest gain reaching the target amplitude; else the largest whose correlation
    stays within `max_r_drop` of the first gain's."""
    floor = correlation[0] - config.max_r_drop
    allowed = [g for g, r in zip(gains, correlation) if r >= floor]
    for g, a in zip(gains, amplitude):
        if a >= config.target and g in allowed:
            return float(g)
    return float(max(allowed)) if allowed else float(gains[0])


def calibrate_lip_gain(model_dir: Path, config: LipGainConfig = LipGainConfig(), device: str = "cpu") -> dict:
    from ..data.avatar import load_avatar, resize_image
    from ..prepare.landmarks import track_landmarks
    from ..render.frames import frame_conditioning, render_frame
    from ..render.loading import load_trained
    from .lips import training_range, valid_training_frames

    if not config.gains or config.gains[0] != 1.0 or list(config.gains) != sorted(config.gains):
        raise InputError("lip gains must start at 1.0 and increase")
    if config.drive not in ("speech", "real"):
        raise InputError(f"lip-gain drive must be speech or real, not {config.drive!r}")
    trained = load_trained(model_dir, device)
    avatar = load_avatar(trained.avatar_dir)
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    train = valid_training_frames(avatar)
    frames = train[np.linspace(0, len(train) - 1, min(config.frames, len(train))).round().astype(int)]
    real_opening = _opening(avatar.landmarks[frames].copy())
    commanded, commanded_opening = _commanded_lips(avatar, frames, config.drive, real_opening, device)
    mean = training_mean(avatar)
    lo, hi = training_range(avatar)
    amplitude, correlation = [], []
    with trained.acceleration.autocast(trained.device):
        for gain in config.gains:
            rendered = []
            for index, planned in zip(frames, commanded):
                lips = np.clip(scale_about(planned, mean, gain), lo, hi).astype(np.float32)
                cond = dict(frame_conditioning(avatar, int(index)), lip_feature=torch.from_numpy(lips))
                rendered.append(render_frame(trained.model, avatar, cond, trained.grid, trained.render_config,
                                             background, scale=trained.image_scale))
            points, found = track_landmarks(np.stack(rendered))
            if found.sum() < 3:
                raise InputError(f"{model_dir}: the face mesh finds no face in the model's renders; "
                                 "train it longer before calibrating")
            opening = _opening(points[found])
            amplitude.append(float(np.std(opening) / max(np.std(real_opening[found]), 1e-12)))
            correlation.append(float(np.corrcoef(opening, commanded_opening[found])[0, 1]))
    gain = choose_gain(config.gains, amplitude, correlation, config)
    result = {"gain": gain, "gains": list(config.gains), "amplitude": [round(a, 3) for a in amplitude],
              "correlation": [round(r, 3) for r in correlation], "frames": int(len(frames)),
              "config": asdict(config),
              "note": "measured on training frames driven by " + ("the lip features speak plans from their own audio"
                                                                   if config.drive == "speech" else
                                                                   "their prepared lip features")
              + "; amplitude: rendered / real opening spread; correlation: rendered vs commanded opening; "
                "speak scales its lip features by gain"}
    tmp = Path(model_dir) / (GAIN_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(Path(model_dir) / GAIN_FILE)
    return result


def _commanded_lips(avatar, frames: np.ndarray, drive: str, real_opening: np.ndarray, device: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """([len(frames), K] lip features to render, [len(frames)] the mouth opening they command)."""
    if drive == "real":
        return avatar.lip_feature[frames], real_opening
    from .lips import lip_driver, predicted_opening

    lips = lip_driver(avatar, device=device)
    first, last = int(frames.min()), int(frames.max())
    # the soundtrack under the span of the chosen frames, planned as `speak` would plan it
    shared = lips.shared_features(avatar.audio_for_frames(first, last), last - first + 1)
    return lips.lip_features(shared)[frames - first], predicted_opening(lips, shared)[frames - first]


def load_lip_gain(model_dir: Path) -> float:
    """The calibrated gain of a model, 1.0 if it was never calibrated."""
    path = Path(model_dir) / GAIN_FILE
    if not path.exists():
        return 1.0
    try:
        return float(json.loads(path.read_text())["gain"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not a lip-gain file written by calibrate-lips ({err})") from err

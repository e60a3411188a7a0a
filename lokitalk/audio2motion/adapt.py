"""Per-identity adaptation: the shared model, nudged to one person's speaking style.

Two light steps on the person's own clip (its train-split frames only):

1. Head fine-tuning. The convolutional audio encoder stays frozen (it is what generalises
   across voices and languages); only the MLP head is trained on this person's frames, with a
   penalty pulling its weights back to the shared model's (`anchor`), for a few hundred
   steps. The encoder's outputs are computed once, so this takes seconds on a CPU.
2. Amplitude calibration. Regression to the mean makes predicted lips move less than real
   ones. A gain on the predicted deviation from this person's mean mouth (`Style`) is set so
   that the predicted mouth opening varies as much as the person's real opening on the same
   frames, clamped to [1/max_gain, max_gain].

`adapt_to_identity` returns a new model and the `Style`; the shared model is not modified, and
nothing else about the network changes, so other voices and languages still go through the
same frozen encoder (held-out numbers in docs/RESULTS.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..prepare.signals import LipBasis
from .model import Audio2Motion
from .shared_basis import decode_points, opening_from_mouth
from .train import MotionClip, _opening_torch, mouth_width


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    anchor: float = 1e-2  # weight of the squared distance of head weights to the shared model's
    opening_weight: float = 1.0
    calibrate_amplitude: bool = True
    max_gain: float = 2.0
    min_frames: int = 50  # fewer usable training frames: no fine-tuning (calibration only)
    seed: int = 0


@dataclass(frozen=True)
class Style:
    """Output transform in the shared space: centre + gain * (prediction - centre)."""

    centre: np.ndarray  # [K]
    gain: float = 1.0

    def apply(self, features: np.ndarray) -> np.ndarray:
        return self.centre + self.gain * (features - self.centre)

    @classmethod
    def identity(cls, components: int) -> "Style":
        return cls(np.zeros(components), 1.0)


def _head_params(model: Audio2Motion) -> list[torch.nn.Parameter]:
    return list(model.head.parameters())


def fine_tune_head(model: Audio2Motion, basis: LipBasis, clip: MotionClip,
                   config: AdaptConfig) -> tuple[Audio2Motion, list[dict]]:
    """A copy of `model` whose head is fitted to `clip`'s training frames (encoder frozen)."""
    adapted = copy.deepcopy(model).cpu()
    frames = clip.train_frames
    if len(frames) < config.min_frames or config.steps <= 0:
        return adapted, []
    torch.manual_seed(config.seed)
    x = torch.from_numpy(adapted.prepare_windows(clip.windows)[frames])
    with torch.no_grad():
        adapted.eval()
        encoded = torch.cat([adapted.encoder(x[i:i + 512].transpose(1, 2)) for i in range(0, len(x), 512)])
    target = torch.from_numpy(clip.features[frames]).float()
    comps = torch.tensor(basis.components, dtype=torch.float32)
    neutral = torch.tensor(basis.neutral, dtype=torch.float32)
    rest_mm = torch.tensor(clip.mouth.rest * clip.mouth.scale * 1e3, dtype=torch.float32)[None]
    width_mm = torch.tensor(float(mouth_width(clip.mouth.rest)) * clip.mouth.scale * 1e3)
    points = rest_mm.shape[1]
    anchor = [p.detach().clone() for p in _head_params(adapted)]
    for p in adapted.encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(_head_params(adapted), lr=config.lr)
    adapted.train()
    history = []

    def offsets(feat: torch.Tensor) -> torch.Tensor:
        return ((feat @ comps + neutral) * 1e3).reshape(len(feat), points, 3)

    for step in range(config.steps):
        idx = torch.randint(0, len(frames), (config.batch_size,))
        z = adapted.head(encoded[idx])
        pred = adapted.feature_mean + adapted.feature_std * z
        feat_loss = (((pred - target[idx]) * 1e3) ** 2).sum(1).mean() / points
        rest = rest_mm.expand(len(idx), -1, -1)
        open_loss = ((_opening_torch(offsets(pred), rest, width_mm) -
                      _opening_torch(offsets(target[idx]), rest, width_mm)) ** 2).mean()
        reg = sum(((p - a) ** 2).sum() for p, a in zip(_head_params(adapted), anchor))
        loss = feat_loss + config.opening_weight * open_loss + config.anchor * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == config.steps - 1:
            history.append({"step": step, "loss": loss.item(), "feature_mm2": feat_loss.item()})
    for p in adapted.parameters():
        p.requires_grad_(True)
    adapted.eval()
    return adapted, history


def fit_style(model: Audio2Motion, basis: LipBasis, clip: MotionClip, config: AdaptConfig) -> tuple[Style, dict]:
    """Centre = the mean predicted feature on the person's training frames; gain so that the
    predicted opening's spread matches the real opening's spread on those frames."""
    frames = clip.train_frames
    pred = model.predict_clip(clip.windows)[frames]
    centre = pred.mean(0)
    real_open = opening_from_mouth(clip.points[frames])
    pred_open = opening_from_mouth(decode_points(np.ascontiguousarray(pred), clip.mouth, basis))
    ratio = float(real_open.std() / max(pred_open.std(), 1e-9))
    gain = float(np.clip(ratio, 1.0 / config.max_gain, config.max_gain)) if config.calibrate_amplitude else 1.0
    return Style(centre, gain), {"amplitude_ratio_before": 1.0 / ratio if ratio > 0 else None, "gain": gain,
                                 "frames": int(len(frames))}


def adapt_to_identity(model: Audio2Motion, basis: LipBasis, clip: MotionClip,
                      config: AdaptConfig = AdaptConfig()) -> tuple[Audio2Motion, Style, dict]:
    """(adapted model, output style, report) for the person of `clip` (targets must be set)."""
    if clip.features is None:
        clip.with_targets(basis)
    adapted, history = fine_tune_head(model, basis, clip, config)
    style, report = fit_style(adapted, basis, clip, config)
    report.update({"fine_tune_steps": config.steps if history else 0, "history": history})
    return adapted, style, report


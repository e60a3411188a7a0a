"""Training Audio2Motion on many identities at once, and its held-out evaluation.

Training uses only the valid frames of each clip's train split, sampled so that every
identity is drawn equally often (a 60 s clip of one person must not outweigh ten 5 s clips of
ten others: the goal is voices never heard). Loss = squared error of the shared features, in
mm of (size-normalised) mouth-point displacement, plus the squared error of the mouth opening
computed from the decoded points (the opening is what a viewer notices first).

The evaluation decodes predictions with each clip's own rest mouth and size (known for any
avatar being driven) and compares with the real landmarks: mean distance of the 40 mouth
points (mm), Pearson correlation of predicted and real opening over time per clip, the
amplitude ratio std(predicted opening) / std(real opening), and the same numbers for the
trivial baseline that always predicts the speaker-independent mean feature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..prepare.signals import LipBasis
from .model import Audio2Motion, Audio2MotionConfig
from .shared_basis import (IdentityMouth, avatar_mouth, decode_points, encode_points, head_mouth_points,
                           identity_name, mouth_width, opening_from_mouth, training_frames)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    opening_weight: float = 1.0  # weight of the opening loss (mm^2) beside the feature loss (mm^2)
    noise_std: float = 0.1  # augmentations on normalised log-mel: additive noise,
    tilt_std: float = 0.3  # a random spectral tilt (residual channel mismatch),
    freq_mask: int = 10  # and one masked band range of up to this many mel bands
    seed: int = 0
    threads: int = 1  # more threads on a busy 2-core machine slow training down several-fold
    log_every: int = 100
    verbose: bool = False  # print each logged history row


@dataclass
class MotionClip:
    """One clip's inputs and targets in the shared space."""

    name: str
    identity: str
    windows: np.ndarray  # [N,W,M] raw log-mel windows (float16)
    mouth: IdentityMouth
    points: np.ndarray  # [N,40,3] real mouth points, head frame, metres
    train_frames: np.ndarray  # valid frames of the train split
    test_frames: np.ndarray  # valid frames of the test split
    features: np.ndarray | None = None  # [N,K] targets, filled by `with_targets`

    def with_targets(self, basis: LipBasis) -> "MotionClip":
        self.features = encode_points(self.points, self.mouth, basis)
        return self


def load_motion_clip(avatar, basis: LipBasis) -> MotionClip:
    """An Avatar (or an avatar folder) -> MotionClip with targets in `basis`."""
    from ..data.avatar import load_avatar

    avatar = load_avatar(avatar) if isinstance(avatar, (str, Path)) else avatar
    test = np.asarray(avatar.split.test, int)
    return MotionClip(avatar.root.name, identity_name(avatar), avatar.audio_features, avatar_mouth(avatar),
                      head_mouth_points(avatar), training_frames(avatar), test[avatar.valid[test]]
                      ).with_targets(basis)


def balanced_stats(clips: list[MotionClip]) -> tuple[np.ndarray, np.ndarray]:
    """Identity-balanced mean and std of the training features."""
    weights = _frame_weights(clips)
    feats = np.concatenate([c.features[c.train_frames] for c in clips])
    mean = (weights[:, None] * feats).sum(0)
    std = np.sqrt((weights[:, None] * (feats - mean) ** 2).sum(0))
    return mean, np.maximum(std, 1e-6)


def _frame_weights(clips: list[MotionClip]) -> np.ndarray:
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.identity] = counts.get(c.identity, 0) + len(c.train_frames)
    w = np.concatenate([np.full(len(c.train_frames), 1.0 / counts[c.identity]) for c in clips])
    return w / w.sum()


def _opening_torch(offsets_mm: torch.Tensor, rest_mm: torch.Tensor, width_mm: torch.Tensor) -> torch.Tensor:
    """Opening (mm) of size-normalised mouths rest + offsets [B,M,3]: inner area / width."""
    pts = rest_mm + offsets_mm
    inner = pts[:, pts.shape[1] // 2:, :2]
    x, y = inner[..., 0], inner[..., 1]
    area = 0.5 * torch.abs((x * torch.roll(y, -1, 1) - y * torch.roll(x, -1, 1)).sum(1))
    return area / width_mm


def train_on_clips(clips: list[MotionClip], basis: LipBasis, config: TrainConfig = TrainConfig(),
                   model_config: Audio2MotionConfig | None = None) -> tuple[Audio2Motion, list[dict]]:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(config.threads)
    k = basis.components.shape[0]
    model_config = model_config or Audio2MotionConfig(components=k, window=clips[0].windows.shape[1],
                                                      n_mels=clips[0].windows.shape[2])
    mean, std = balanced_stats(clips)
    model = Audio2Motion(model_config, mean, std)

    windows = torch.from_numpy(np.concatenate([model.prepare_windows(c.windows)[c.train_frames] for c in clips]))
    targets = torch.from_numpy(np.concatenate([c.features[c.train_frames] for c in clips])).float()
    clip_index = torch.from_numpy(np.concatenate([np.full(len(c.train_frames), i) for i, c in enumerate(clips)]))
    rest_mm = torch.tensor(np.stack([c.mouth.rest * c.mouth.scale * 1e3 for c in clips]), dtype=torch.float32)
    width_mm = torch.tensor([float(mouth_width(c.mouth.rest)) * c.mouth.scale * 1e3 for c in clips])
    comps = torch.tensor(basis.components, dtype=torch.float32)
    neutral = torch.tensor(basis.neutral, dtype=torch.float32)
    points = rest_mm.shape[1]
    weights = torch.from_numpy(_frame_weights(clips))
    bands = windows.shape[2]
    ramp = torch.linspace(-1, 1, bands)

    def offsets_mm(feat: torch.Tensor) -> torch.Tensor:
        return ((feat @ comps + neutral) * 1e3).reshape(len(feat), points, 3)

    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps, pct_start=0.1)
    history: list[dict] = []
    start = time.perf_counter()
    for step in range(config.steps):
        idx = torch.multinomial(weights, config.batch_size, replacement=True)
        x = windows[idx].float()
        x = x + config.noise_std * torch.randn_like(x)
        x = x + config.tilt_std * torch.randn(len(x), 1, 1) * ramp
        if config.freq_mask > 0:
            lo = int(rng.integers(0, bands))
            x[:, :, lo:lo + int(rng.integers(0, config.freq_mask + 1))] = 0.0
        pred = model(x)
        tgt = targets[idx]
        # Feature loss: squared displacement summed over the 120 coordinates / 40 points = mean
        # squared point distance (mm^2) of the size-normalised mouth (the basis is orthonormal).
        feat_loss = (((pred - tgt) * 1e3) ** 2).sum(1).mean() / points
        ci = clip_index[idx]
        open_pred = _opening_torch(offsets_mm(pred), rest_mm[ci], width_mm[ci])
        open_true = _opening_torch(offsets_mm(tgt), rest_mm[ci], width_mm[ci])
        open_loss = ((open_pred - open_true) ** 2).mean()
        loss = feat_loss + config.opening_weight * open_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            history.append({"step": step, "loss": loss.item(), "feature_mm2": feat_loss.item(),
                            "opening_mm2": open_loss.item(), "elapsed_s": time.perf_counter() - start})
            if config.verbose:
                print(history[-1], flush=True)
    model.eval()
    return model, history


def train_audio2motion(avatar_dirs: list, basis: LipBasis, config: TrainConfig = TrainConfig(),
                       model_config: Audio2MotionConfig | None = None) -> tuple[Audio2Motion, list[dict]]:
    """Train on the train-split frames of all avatars (folders or Avatar objects)."""
    clips = [load_motion_clip(a, basis) for a in avatar_dirs]
    return train_on_clips(clips, basis, config, model_config)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either series is constant (no linear relation to show)."""
    if min(a.std(), b.std()) <= 1e-9 * max(np.abs(a).max(), np.abs(b).max(), 1e-30):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def evaluate_clip(model: Audio2Motion, basis: LipBasis, clip: MotionClip, frames: np.ndarray) -> dict:
    pred = model.predict_clip(clip.windows)[frames]
    base = np.broadcast_to(model.feature_mean.numpy().astype(np.float64), pred.shape)
    real = clip.points[frames]
    real_open = opening_from_mouth(real)
    out: dict = {"clip": clip.name, "identity": clip.identity, "frames": int(len(frames))}
    for name, feat in (("model", pred), ("baseline", base)):
        pts = decode_points(np.ascontiguousarray(feat), clip.mouth, basis)
        opening = opening_from_mouth(pts)
        out[f"{name}_landmark_mm"] = float(np.linalg.norm(pts - real, axis=-1).mean() * 1e3)
        out[f"{name}_opening_corr"] = _pearson(opening, real_open)
        out[f"{name}_amplitude_ratio"] = float(opening.std() / max(real_open.std(), 1e-12))
    out["real_opening_std_mm"] = float(real_open.std() * 1e3)
    return out


def evaluate_audio2motion(model: Audio2Motion, basis: LipBasis, avatars: list,
                          frames: str = "all") -> dict:
    """Per-clip and mean metrics. `frames`: "all" valid frames (for identities held out of
    training entirely) or "test" (the test split, for identities seen in training)."""
    clips = [a if isinstance(a, MotionClip) else load_motion_clip(a, basis) for a in avatars]
    rows = []
    for clip in clips:
        use = clip.test_frames if frames == "test" else np.concatenate([clip.train_frames, clip.test_frames])
        rows.append(evaluate_clip(model, basis, clip, np.sort(use)))
    keys = [k for k in rows[0] if k not in ("clip", "identity", "frames")]
    return {"clips": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys}}

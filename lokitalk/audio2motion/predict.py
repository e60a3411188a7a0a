"""Audio2Motion on speech of any length, in chunks with bounded memory.

`predict_clip` (model.py) takes the windows of a whole clip at once: fine for a prepared avatar,
not for an hour of speech. `predict_audio` does the same computation chunk by chunk: the log-mel
of each chunk is computed from the audio around it (`mel_frames`, equal to slicing the whole
clip's log-mel), the utterance normalisation uses statistics gathered in a first pass over the
whole clip (per-band mean, overall spread: the same normalisation as `utterance_normalise`, on
mel frames instead of overlapping windows), and the temporal smoothing runs over each chunk
with a margin of neighbouring frames wide enough that chunk seams do not show (identical
results to one pass; tests check).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from ..prepare.audio_features import AudioFeatureSpec, log_mel
from .model import Audio2Motion


def mel_frames(audio: np.ndarray, first: int, stop: int, spec: AudioFeatureSpec) -> np.ndarray:
    """log_mel(audio, spec)[first:stop], computed from the audio around those frames only."""
    hop = spec.hop_length
    extra = math.ceil(spec.n_fft / 2 / hop) + 1
    start = max(0, first - extra)
    segment = audio[start * hop:(stop + extra) * hop]
    return log_mel(segment, spec)[first - start:stop - start]


def num_mel_frames(num_samples: int, spec: AudioFeatureSpec) -> int:
    return 1 + num_samples // spec.hop_length


def utterance_stats(audio: np.ndarray, spec: AudioFeatureSpec, chunk: int = 6000) -> tuple[np.ndarray, float]:
    """Per-band mean and overall std (after removing the band means) of the clip's log-mel,
    accumulated chunk by chunk (sums in float64)."""
    total = num_mel_frames(len(audio), spec)
    s1 = np.zeros(spec.n_mels)
    s2 = np.zeros(spec.n_mels)
    for a in range(0, total, chunk):
        mel = mel_frames(audio, a, min(total, a + chunk), spec).astype(np.float64)
        s1 += mel.sum(0)
        s2 += (mel ** 2).sum(0)
    mean = s1 / total
    var = (s2 / total - mean ** 2).sum() / spec.n_mels
    return mean.astype(np.float32), float(max(np.sqrt(max(var, 0.0)), 1e-6))


def band_statistics(audio: np.ndarray, spec: AudioFeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and per-band variance of a recording's log-mel (float64): what a stream's
    running normalisation starts from (lokitalk.speak.stream_lips); pooled, `utterance_stats`."""
    mel = log_mel(np.asarray(audio, np.float32), spec).astype(np.float64)
    return mel.mean(0), mel.var(0)


def pooled_band_statistics(stats: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several recordings' `band_statistics`, each weighted equally -> one (mean, variance)."""
    mean = np.mean([m for m, _ in stats], 0)
    second = np.mean([v + m ** 2 for m, v in stats], 0)
    return mean, np.maximum(second - mean ** 2, 0.0)


def windows_for_frames(audio: np.ndarray, frames: np.ndarray, fps: float, spec: AudioFeatureSpec,
                       window: int) -> np.ndarray:
    """[len(frames), window, n_mels] log-mel windows of video frames `frames` (as
    `frame_windows` with a `window`-frame context; outside the signal: the log floor)."""
    half = window // 2
    centres = np.round(np.asarray(frames) / fps / spec.hop_s).astype(int)
    total = num_mel_frames(len(audio), spec)
    lo = int(np.clip(centres.min() - half, 0, total))
    hi = int(np.clip(centres.max() - half + window, lo, total))
    mel = mel_frames(audio, lo, hi, spec) if hi > lo else np.zeros((0, spec.n_mels), np.float32)
    padded = np.concatenate([mel, np.full((1, spec.n_mels), np.log(spec.log_floor), np.float32)])
    index = centres[:, None] + np.arange(-half, window - half)[None, :]
    index = np.where((index >= lo) & (index < hi), index - lo, len(mel))
    return padded[index]


@torch.no_grad()
def predict_audio(model: Audio2Motion, audio: np.ndarray, num_frames: int, fps: float = 25.0,
                  spec: AudioFeatureSpec = AudioFeatureSpec(), chunk_frames: int = 1000,
                  stats: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """Speech [T] at spec.sample_rate -> [num_frames, K] smoothed shared lip features."""
    config = model.config
    mean, std = stats if stats is not None else utterance_stats(audio, spec)
    sigma = config.smooth_sigma_frames
    margin = int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 0  # gaussian_filter1d's reach (truncate=4)
    was_training = model.training
    model.eval()
    device = model.feature_mean.device
    out = np.empty((num_frames, config.components), np.float64)
    for a in range(0, num_frames, chunk_frames):
        b = min(num_frames, a + chunk_frames)
        lo, hi = max(0, a - margin), min(num_frames, b + margin)
        x = windows_for_frames(audio, np.arange(lo, hi), fps, spec, config.input_length)
        x = torch.from_numpy((x - mean) / std).to(device)
        pred = model(x).double().cpu().numpy()
        if sigma > 0 and len(pred) > 1:
            # the clip's own ends behave like predict_clip's (mode="nearest"); chunk seams see
            # real neighbours within the margin
            pred = gaussian_filter1d(pred, sigma, axis=0, mode="nearest")
        out[a:b] = pred[a - lo:b - lo]
    model.train(was_training)
    return out

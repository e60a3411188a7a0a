"""The Audio2Motion network: one frame's log-mel context window -> its shared lip feature.

Input: prepare's per-frame windows [B, 32, 80] (0.32 s of 10 ms log-mel frames centred on the
video frame), first normalised per utterance (`utterance_normalise`): the clip's mean log-mel of
each band is subtracted and the result divided by the clip's overall spread. A constant gain, a
microphone's colouring and a speaker's average spectral tilt are constants per band in log-mel,
so this removes them without assuming anything about the language (no phonemes, no text).

Network: a 1-D conv stack over the window's time axis (mel bands as channels; strided, so it
sees syllable-scale context), flattened (the centre of the window must stay distinguishable
from its edges), then an MLP head. The head predicts whitened features; the output is
`feature_mean + feature_std * head`, in the shared space (`shared_basis`).

Temporal smoothing: frames are predicted independently (windows overlap, so neighbours agree
anyway), then `predict_clip` applies a zero-phase Gaussian over time (`smooth_sigma_frames`):
no lag, and it removes frame-to-frame jitter. `context_frames` widens the input with the neighbouring frames'
windows (0.48 s or 0.64 s instead of 0.32 s); on the current clips (~6k training frames) it did
not help held-out speakers, so it is off. A recurrent/transformer sequence model is left for
when there is more data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn


@dataclass(frozen=True)
class Audio2MotionConfig:
    n_mels: int = 80
    window: int = 32  # mel frames per input window (AudioFeatureSpec.window)
    components: int = 16  # shared lip feature size
    channels: int = 64
    hidden: int = 256
    dropout: float = 0.5  # heavy: ~6k training frames from 19 people overfit fast
    smooth_sigma_frames: float = 1.0  # zero-phase Gaussian over predicted frames; 0 = none
    context_frames: int = 0  # widen each window by the windows of frames k +- this (see extend_context)
    mel_per_frame: int = 4  # mel frames per video frame (10 ms hop, 25 fps)

    @property
    def input_length(self) -> int:
        return self.window + 2 * self.mel_per_frame * self.context_frames


def extend_context(windows: np.ndarray, frames: int, mel_per_frame: int = 4) -> np.ndarray:
    """[N,W,M] per-frame windows -> [N, W + 2*frames*mel_per_frame, M]: frame k's window
    extended on each side with the mel frames that only the windows of frames k -+ `frames`
    hold (they are contiguous: window k+f starts f*mel_per_frame mel frames later). Clip ends
    repeat the first/last window's edge (near-silence in practice)."""
    if frames == 0:
        return windows
    n, extra = len(windows), frames * mel_per_frame
    before = windows[np.clip(np.arange(n) - frames, 0, n - 1), :extra]
    after = windows[np.clip(np.arange(n) + frames, 0, n - 1), -extra:]
    return np.concatenate([before, windows, after], axis=1)


def utterance_normalise(windows: np.ndarray) -> np.ndarray:
    """[N,W,M] log-mel windows of one clip -> the same, minus the clip's mean per band and over
    the clip's overall standard deviation (float32)."""
    x = np.asarray(windows, np.float32)
    x = x - x.mean((0, 1), keepdims=True)
    return x / max(float(x.std()), 1e-6)


class Audio2Motion(nn.Module):
    def __init__(self, config: Audio2MotionConfig = Audio2MotionConfig(),
                 feature_mean: np.ndarray | None = None, feature_std: np.ndarray | None = None):
        super().__init__()
        self.config = config
        k, c = config.components, config.channels
        mean = np.zeros(k) if feature_mean is None else feature_mean
        std = np.ones(k) if feature_std is None else feature_std
        # feature_mean is also the trivial baseline: the speaker-independent mean feature.
        self.register_buffer("feature_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.as_tensor(std, dtype=torch.float32))
        self.encoder = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 3, padding=1), nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(),
        )
        length = config.input_length
        for _ in range(3):
            length = (length + 1) // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(c * length, config.hidden), nn.GELU(),
            nn.Dropout(config.dropout), nn.Linear(config.hidden, k),
        )
        nn.init.zeros_(self.head[-1].weight)  # start at the mean feature (the baseline)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """[B,W,M] utterance-normalised windows -> [B,K] shared lip features."""
        z = self.head(self.encoder(windows.transpose(1, 2)))
        return self.feature_mean + self.feature_std * z

    def prepare_windows(self, windows: np.ndarray) -> np.ndarray:
        """Raw [N,W,M] windows of one whole clip -> the network's normalised, extended input."""
        c = self.config
        return extend_context(utterance_normalise(windows), c.context_frames, c.mel_per_frame)

    @torch.no_grad()
    def predict_clip(self, windows: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Raw [N,W,M] log-mel windows of one clip -> [N,K] smoothed shared features."""
        was_training = self.training
        self.eval()
        x = torch.from_numpy(self.prepare_windows(windows))
        out = torch.cat([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()
        self.train(was_training)
        if self.config.smooth_sigma_frames > 0 and len(out) > 1:
            out = gaussian_filter1d(out, self.config.smooth_sigma_frames, axis=0, mode="nearest")
        return out.astype(np.float64)

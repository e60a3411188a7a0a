"""Audio features aligned to video frames: log-mel windows with context.

The format is described by `AudioFeatureSpec` and saved beside the array
(`audio_features.json`), so a later feature (a learned encoder, another front end) can replace
log-mel by writing a different spec; consumers read the spec, not assumptions.

Frame k of the video is displayed at t_k = k / fps. Its feature window is the `window`
consecutive mel frames centred on t_k: mel frame j covers the STFT window centred at
j * hop_s (librosa's centred framing), so window k holds frames round(t_k/hop_s) - window/2
... + window/2 - 1. Outside the signal the features are the log floor (silence).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class AudioFeatureSpec:
    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms: 4 mel frames per video frame at 25 fps
    n_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    window: int = 32  # mel frames of context per video frame: 0.32 s centred on the frame
    log_floor: float = 1e-5

    @property
    def hop_s(self) -> float:
        return self.hop_length / self.sample_rate

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "AudioFeatureSpec":
        return cls(**json.loads(Path(path).read_text()))


def log_mel(audio: np.ndarray, spec: AudioFeatureSpec) -> np.ndarray:
    """[T_audio] float32 -> [T_mel, n_mels] natural-log mel power.

    Plain numpy (centred frames, zero padding, a periodic Hann window of win_length centred in
    n_fft, a Slaney mel filterbank); it equals librosa.feature.melspectrogram (tests check)
    without librosa's import and numba start-up cost (about 1-2 s, a fifth of a short prepare)."""
    audio = np.asarray(audio, np.float32)
    pad = spec.n_fft // 2
    padded = np.pad(audio, pad, mode="constant")  # librosa >= 0.10 pads centred frames with zeros
    count = 1 + (len(padded) - spec.n_fft) // spec.hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, spec.n_fft), strides=(padded.strides[0] * spec.hop_length, padded.strides[0]))
    window = np.zeros(spec.n_fft, np.float32)
    offset = (spec.n_fft - spec.win_length) // 2
    window[offset:offset + spec.win_length] = np.hanning(spec.win_length + 1)[:-1]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel_basis = mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
    return np.log(np.maximum(power @ mel_basis.T, spec.log_floor)).astype(np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_mels, n_fft//2+1] triangular filters, Slaney-normalised (equal area), as librosa."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def frame_windows(mel: np.ndarray, num_frames: int, fps: float, spec: AudioFeatureSpec) -> np.ndarray:
    """[T_mel, M] -> [num_frames, window, M]: the context window of every video frame."""
    half = spec.window // 2
    centres = np.round(np.arange(num_frames) / fps / spec.hop_s).astype(int)
    index = centres[:, None] + np.arange(-half, spec.window - half)[None, :]
    floor = np.log(spec.log_floor)
    padded = np.concatenate([mel, np.full((1, mel.shape[1]), floor, mel.dtype)])
    index = np.where((index >= 0) & (index < len(mel)), index, len(mel))  # out of range -> floor row
    return padded[index]


def frame_windows_reference(mel: np.ndarray, num_frames: int, fps: float, spec: AudioFeatureSpec) -> np.ndarray:
    """Slow reference of `frame_windows`: explicit loops."""
    half = spec.window // 2
    out = np.full((num_frames, spec.window, mel.shape[1]), np.log(spec.log_floor), np.float32)
    for k in range(num_frames):
        centre = int(round(k / fps / spec.hop_s))
        for w in range(spec.window):
            j = centre - half + w
            if 0 <= j < len(mel):
                out[k, w] = mel[j]
    return out


def audio_features(audio: np.ndarray, num_frames: int, fps: float,
                   spec: AudioFeatureSpec = AudioFeatureSpec()) -> np.ndarray:
    """Audio [T] at spec.sample_rate -> [num_frames, window, n_mels] float16."""
    return frame_windows(log_mel(audio, spec), num_frames, fps, spec).astype(np.float16)


def frame_energy_db(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """RMS energy in dB of the audio under each video frame (window of one frame, centred)."""
    hop = sample_rate / fps
    out = np.full(num_frames, -100.0)
    for k in range(num_frames):
        a = int(round((k - 0.5) * hop))
        b = int(round((k + 0.5) * hop))
        seg = audio[max(a, 0):max(b, 0)]
        if len(seg):
            out[k] = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-10)
    return out

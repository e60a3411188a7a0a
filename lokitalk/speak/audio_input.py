"""The speech that drives `speak`: any file FFmpeg decodes, checked before anything is rendered."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

SAMPLE_RATE = 16000
SILENCE_DBFS = -50.0  # louder than this somewhere (50 ms RMS), or the audio counts as silent


def load_speech(path: str | Path, min_seconds: float = 0.5, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 speech at `sample_rate`, or an InputError naming what is wrong with it:
    missing, a directory, not decodable, no audio stream, shorter than `min_seconds`, silent."""
    from ..media.audio import load_audio
    from ..media.files import check_file

    path = Path(path)
    check_file(path)  # missing, a directory, empty
    audio = load_audio(path, sample_rate)  # InputError for anything FFmpeg cannot decode
    seconds = len(audio) / sample_rate
    if seconds < min_seconds:
        raise InputError(f"{path} holds {seconds:.2f} s of audio: at least {min_seconds:g} s of speech is needed")
    if loudest_dbfs(audio, sample_rate) < SILENCE_DBFS:
        raise InputError(f"{path} is silent (never louder than {SILENCE_DBFS:.0f} dBFS): there is no speech to "
                         "lip-sync")
    return audio


def loudest_dbfs(audio: np.ndarray, sample_rate: int, window_s: float = 0.05) -> float:
    """The loudest 50 ms RMS level of `audio`, dB relative to full scale."""
    n = max(1, int(window_s * sample_rate))
    usable = len(audio) // n * n
    if usable == 0:
        return float(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20))
    blocks = audio[:usable].astype(np.float64).reshape(-1, n)
    return float(10 * np.log10((blocks ** 2).mean(1).max() + 1e-20))


def frames_for(audio: np.ndarray, fps: float, sample_rate: int = SAMPLE_RATE) -> tuple[int, np.ndarray]:
    """Video frames for this speech (the last partial frame dropped) and the audio trimmed to
    exactly that many frames, so that picture and sound end together."""
    hop = sample_rate / fps
    frames = max(1, int(len(audio) // hop))
    return frames, audio[:int(round(frames * hop))]

"""Audio-video offset of a talking clip: a lag scan of mouth opening against speech energy.

Sign convention: `offset_s > 0` means the audio is late (the sound of a syllable comes after
the mouth movement that made it). Correcting it means taking audio from `offset_s` later:
corrected(t) = audio(t + offset_s) (see `shift_audio`).

The mouth opens with the voice, so opening and loudness correlate best at the true lag. Both
series are first high-passed (minus a ~0.3 s moving average): what carries the timing is the
syllable rhythm (3-8 Hz), not slow drifts of posture or loudness. Loudness is measured in the
speech band (300-3000 Hz) so that rumble and hiss do not count. The scan correlates the
z-scored series over lags within +-max_lag_s, refines the peak to a
fraction of a frame by a parabola, and calls the estimate confident when the peak is high
(above chance for the clip's length),
stands above the median lag, and beats every lag three or more frames away from it (speech is
rhythmic, so a peak one syllable away can rival the true one). Only confident estimates larger
than one frame are applied: a one-frame
lead of the lips over the sound is normal speech, not an offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OffsetConfig:
    max_lag_s: float = 0.4
    min_peak_correlation: float = 0.15
    significance: float = 3.0  # the peak must also exceed significance / sqrt(frames)
    min_prominence: float = 0.08  # peak minus the median correlation over all lags
    min_margin: float = 0.08  # peak minus the best correlation >= 3 frames away from it
    apply_above_s: float = 0.041  # apply only offsets larger than about one frame at 25 fps
    energy_floor_db: float = 40.0  # energy is clipped this far below its 99th percentile
    detrend_s: float = 0.3  # moving-average window removed from both series


@dataclass(frozen=True)
class OffsetEstimate:
    offset_s: float
    peak_correlation: float
    prominence: float
    confident: bool
    lags_s: np.ndarray
    correlations: np.ndarray

    def applied_offset_s(self, config: OffsetConfig = OffsetConfig()) -> float:
        if self.confident and abs(self.offset_s) > config.apply_above_s:
            return self.offset_s
        return 0.0


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean()) / (x.std() + 1e-9)


def lagged_correlation(video_signal: np.ndarray, audio_signal: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson correlation of video[k] with audio[k + lag] for lag = -max_lag..max_lag."""
    out = np.zeros(2 * max_lag + 1)
    n = len(video_signal)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        a, b = max(0, -lag), min(n, n - lag)
        if b - a < 4:
            out[i] = np.nan
            continue
        v, s = video_signal[a:b], audio_signal[a + lag:b + lag]
        out[i] = np.corrcoef(v, s)[0, 1] if v.std() > 0 and s.std() > 0 else 0.0
    return out


def speech_energy_db(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """Per-video-frame RMS energy (dB) of the audio band-passed to 300-3000 Hz (an ideal,
    zero-phase band-pass in the frequency domain: no delay is added to what is measured)."""
    from .audio_features import frame_energy_db

    spectrum = np.fft.rfft(audio.astype(np.float64))
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
    spectrum[(freqs < 300.0) | (freqs > min(3000.0, 0.45 * sample_rate))] = 0.0
    band = np.fft.irfft(spectrum, n=len(audio))
    return frame_energy_db(band, num_frames, fps, sample_rate)


def _detrend(x: np.ndarray, window: int) -> np.ndarray:
    if window < 3:
        return x
    kernel = np.ones(window) / window
    padded = np.pad(x, window // 2, mode="edge")
    return x - np.convolve(padded, kernel, mode="valid")[: len(x)]


def estimate_offset(mouth_opening: np.ndarray, energy_db: np.ndarray, fps: float,
                    config: OffsetConfig = OffsetConfig()) -> OffsetEstimate:
    """Both series per video frame (energy from `speech_energy_db`). Returns the lag of best
    correlation (see the module doc)."""
    energy = np.maximum(energy_db, np.percentile(energy_db, 99) - config.energy_floor_db)
    window = int(round(config.detrend_s * fps)) | 1
    max_lag = max(1, int(round(config.max_lag_s * fps)))
    corr = lagged_correlation(_zscore(_detrend(mouth_opening, window)),
                              _zscore(_detrend(energy, window)), max_lag)
    corr = np.nan_to_num(corr, nan=-1.0)
    lags = np.arange(-max_lag, max_lag + 1)
    best = int(np.argmax(corr))
    shift = 0.0
    if 0 < best < len(corr) - 1:  # parabolic refinement between neighbouring lags
        y0, y1, y2 = corr[best - 1], corr[best], corr[best + 1]
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
    peak = float(corr[best])
    prominence = peak - float(np.median(corr))
    at_edge = best in (0, len(corr) - 1)
    # speech is rhythmic: a second peak one syllable away can rival the true one
    distant = np.abs(lags - lags[best]) >= 3
    margin = peak - float(corr[distant].max()) if distant.any() else peak
    # chance correlations of n frames reach ~1/sqrt(n): short clips need a higher peak
    threshold = max(config.min_peak_correlation, config.significance / np.sqrt(len(mouth_opening)))
    confident = (peak >= threshold and prominence >= config.min_prominence
                 and margin >= config.min_margin and not at_edge)
    return OffsetEstimate(offset_s=float((lags[best] + shift) / fps), peak_correlation=peak,
                          prominence=prominence, confident=confident, lags_s=lags / fps,
                          correlations=corr)


def shift_audio(audio: np.ndarray, offset_s: float, sample_rate: int) -> np.ndarray:
    """corrected(t) = audio(t + offset_s), same length, silence where nothing is known."""
    k = int(round(offset_s * sample_rate))
    if k == 0:
        return audio.copy()
    out = np.zeros_like(audio)
    if k > 0:
        out[: len(audio) - k] = audio[k:]
    else:
        out[-k:] = audio[: len(audio) + k]
    return out

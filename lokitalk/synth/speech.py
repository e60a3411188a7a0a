"""A speech-like test signal whose amplitude envelope is known exactly.

It is not intelligible speech, but it has the structure the audio features and the A/V sync
checks look at: voiced syllables (a glottal pulse train around 110-140 Hz with jitter and shimmer,
shaped by three formant resonators that glide between vowel targets), consonant-like noise bursts
at some syllable onsets, short gaps between syllables and words, and a few longer pauses.

The returned envelope is the gain of the voiced source (what the synthetic subject's mouth
follows), so tests can compare what they measure in the audio with the truth.

The signal is prefix-stable: for the same seed, a longer duration gives the same samples at the
start (every random stream is consumed in time order and every filter is causal, and the level
is a fixed gain, not a normalisation over the whole signal). `make_talking_clip` relies on this
to shift the audio against the video without changing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, lfilter

ENVELOPE_RATE = 100  # Hz: envelope[i] is the mean source gain over [10 i, 10 i + 10) ms

# Formant targets (Hz) of five vowels, from Peterson & Barney's adult male averages, and how far
# the jaw opens for each (relative; /a/ is the most open).
VOWELS: dict[str, tuple[tuple[float, float, float], float]] = {
    "a": ((730.0, 1090.0, 2440.0), 1.0),
    "e": ((530.0, 1840.0, 2480.0), 0.75),
    "i": ((290.0, 2250.0, 3000.0), 0.5),
    "o": ((570.0, 840.0, 2410.0), 0.85),
    "u": ((320.0, 870.0, 2240.0), 0.55),
}
FORMANT_BANDWIDTHS = (80.0, 100.0, 140.0)  # Hz

_BLOCK_S = 0.005  # the formant filters are updated every 5 ms
_FORMANT_GLIDE_S = 0.025  # time constant of the glide between vowel targets
_OUTPUT_GAIN = 0.17  # fixed (not a normalisation), so that peaks land around 0.5 full scale
_LEAD_IN_S = (0.25, 0.45)  # silence before the first syllable


@dataclass(frozen=True)
class Syllable:
    start_s: float
    end_s: float
    vowel: str
    peak: float  # peak source gain in (0, 1]
    burst: bool  # preceded by a consonant-like noise burst


def plan_syllables(duration_s: float, seed: int = 0) -> list[Syllable]:
    """Syllable timing: 120-300 ms syllables in words of 1-3, 30-70 ms gaps inside words,
    80-160 ms between words and a 300-600 ms pause after about one word in four."""
    rng = np.random.default_rng([seed, 1])
    vowels = sorted(VOWELS)
    out: list[Syllable] = []
    t = float(rng.uniform(*_LEAD_IN_S))
    while t < duration_s:
        for k in range(int(rng.integers(1, 4))):
            if k:
                t += float(rng.uniform(0.03, 0.07))
            length = float(rng.uniform(0.12, 0.30))
            out.append(
                Syllable(
                    start_s=t,
                    end_s=t + length,
                    vowel=vowels[int(rng.integers(len(vowels)))],
                    peak=float(rng.uniform(0.55, 1.0)),
                    burst=bool(rng.random() < 0.45),
                )
            )
            t += length
        t += float(rng.uniform(0.3, 0.6) if rng.random() < 0.25 else rng.uniform(0.08, 0.16))
    return [s for s in out if s.start_s < duration_s]


def _syllable_gain(s: Syllable, t: np.ndarray) -> np.ndarray:
    """Source gain of one syllable at times t: raised-cosine attack and release around a
    plateau with a slight mid-syllable swell."""
    length = s.end_s - s.start_s
    attack = min(0.035, 0.3 * length)
    release = min(0.06, 0.35 * length)
    u = t - s.start_s
    g = np.ones_like(t)
    rise = u < attack
    g[rise] = 0.5 - 0.5 * np.cos(np.pi * np.clip(u[rise] / attack, 0, 1))
    fall = u > length - release
    g[fall] = 0.5 + 0.5 * np.cos(np.pi * np.clip((u[fall] - (length - release)) / release, 0, 1))
    swell = 0.85 + 0.15 * np.sin(np.pi * np.clip(u / length, 0, 1))
    return s.peak * g * swell


def _source_gain(syllables: list[Syllable], n: int, sample_rate: int) -> np.ndarray:
    gain = np.zeros(n, np.float64)
    for s in syllables:
        i0 = max(0, int(np.floor(s.start_s * sample_rate)))
        i1 = min(n, int(np.ceil(s.end_s * sample_rate)) + 1)
        if i0 >= i1:
            continue
        t = np.arange(i0, i1) / sample_rate
        inside = (t >= s.start_s) & (t <= s.end_s)
        gain[i0:i1] = np.where(inside, np.maximum(gain[i0:i1], _syllable_gain(s, t)), gain[i0:i1])
    return gain


def _pulse_train(gain: np.ndarray, syllables: list[Syllable], sample_rate: int, seed: int) -> np.ndarray:
    """Glottal excitation: one impulse per period, split linearly between the two nearest
    samples, amplitude = source gain x shimmer; period = 1/f0 x (1 + jitter).

    f0 has a base per phrase (a new one after every pause), a slow declination through the phrase
    and a small accent per syllable."""
    rng = np.random.default_rng([seed, 2])  # per syllable
    rng_period = np.random.default_rng([seed, 6])  # per glottal period
    base = np.empty(len(syllables))
    phrase_start = np.empty(len(syllables))
    accent = np.empty(len(syllables))
    prev_end = -np.inf
    for k, s in enumerate(syllables):
        b, a = float(rng.uniform(118.0, 140.0)), float(rng.uniform(-0.03, 0.07))
        new_phrase = s.start_s - prev_end > 0.25
        base[k] = b if new_phrase else base[k - 1]
        phrase_start[k] = s.start_s if new_phrase else phrase_start[k - 1]
        accent[k] = a
        prev_end = s.end_s
    starts = np.array([s.start_s for s in syllables])

    n = len(gain)
    train = np.zeros(n + 2, np.float64)
    t = 0.0
    while t * sample_rate < n:
        k = max(0, int(np.searchsorted(starts, t, side="right")) - 1)
        if syllables:
            decl = 1.0 - 0.05 * min(1.0, max(0.0, t - phrase_start[k]) / 2.5)
            f0 = base[k] * decl * (1.0 + accent[k])
        else:
            f0 = 125.0
        jitter, shimmer = rng_period.standard_normal(2)
        period = (1.0 / f0) * (1.0 + 0.012 * float(jitter))
        shimmer = 1.0 + 0.06 * float(shimmer)
        pos = t * sample_rate
        i = int(pos)
        amp = gain[min(i, n - 1)] * shimmer
        if amp > 0:
            frac = pos - i
            train[i] += amp * (1.0 - frac)
            train[i + 1] += amp * frac
        t += period
    return train[:n]


def _resonator(freq: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonator with unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2 * np.pi * freq / sample_rate
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([a.sum()]), a


def _cascade(formants: np.ndarray, sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_resonator(f, bw, sample_rate) for f, bw in zip(formants, FORMANT_BANDWIDTHS)]


@lru_cache(maxsize=8)
def _vowel_gains(sample_rate: int) -> dict[str, float]:
    """Per vowel, the gain that gives the formant cascade the same output level for the same
    source (so the audio's loudness follows the envelope, not the vowel)."""
    n = sample_rate // 4
    train = np.zeros(n)
    train[:: int(round(sample_rate / 125.0))] = 1.0
    source = lfilter([1.0], [1.0, -0.96], train)
    rms = {}
    for v, (formants, _) in VOWELS.items():
        y = source
        for num, den in _cascade(np.array(formants), sample_rate):
            y = lfilter(num, den, y)
        rms[v] = float(np.sqrt(np.mean(y[n // 2 :] ** 2)))
    ref = rms["a"]
    return {v: ref / r for v, r in rms.items()}


def _formant_filter(x: np.ndarray, syllables: list[Syllable], sample_rate: int) -> np.ndarray:
    """Cascade of three resonators whose centre frequencies (and a level correction) glide
    (one-pole, causal) toward the vowel target of the current syllable; coefficients change
    every 5 ms and the filter state carries over."""
    block = max(1, int(round(_BLOCK_S * sample_rate)))
    n = len(x)
    out = np.empty_like(x)
    alpha = 1.0 - np.exp(-_BLOCK_S / _FORMANT_GLIDE_S)
    gains = _vowel_gains(sample_rate)
    first = syllables[0].vowel if syllables else "a"
    current = np.array(VOWELS[first][0])
    gain = gains[first]
    states = [np.zeros(2) for _ in range(3)]
    si = 0
    for b0 in range(0, n, block):
        t = b0 / sample_rate
        while si + 1 < len(syllables) and syllables[si + 1].start_s - 0.02 <= t:
            si += 1
        if syllables:
            vowel = syllables[si].vowel
            current = current + alpha * (np.array(VOWELS[vowel][0]) - current)
            gain = gain + alpha * (gains[vowel] - gain)
        y = x[b0 : b0 + block]
        for k, (num, den) in enumerate(_cascade(current, sample_rate)):
            y, states[k] = lfilter(num, den, y, zi=states[k])
        out[b0 : b0 + block] = gain * y
    return out


def _bursts(syllables: list[Syllable], n: int, sample_rate: int, seed: int) -> np.ndarray:
    """Consonant-like high-passed noise bursts (25-50 ms) ending at some syllable onsets."""
    rng_shape = np.random.default_rng([seed, 3])
    rng_noise = np.random.default_rng([seed, 4])
    gate = np.zeros(n)
    for s in syllables:
        length = float(rng_shape.uniform(0.025, 0.05))
        level = float(rng_shape.uniform(0.1, 0.25))
        if not s.burst:
            continue
        i1 = int(s.start_s * sample_rate + 0.01 * sample_rate)
        i0 = max(0, i1 - int(length * sample_rate))
        i1 = min(n, i1)
        if i0 < i1:
            w = np.hanning(i1 - i0 + 2)[1:-1]
            gate[i0:i1] = np.maximum(gate[i0:i1], level * w)
    b, a = butter(2, 2500.0 / (sample_rate / 2), btype="highpass")
    noise = lfilter(b, a, rng_noise.standard_normal(n))
    return gate * noise


def synth_speech(duration_s: float, sample_rate: int = 16000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like audio and its amplitude envelope.

    Returns (audio, envelope): audio float32 mono at `sample_rate`, round(duration_s *
    sample_rate) samples, peaks around 0.5; envelope float32 in [0, 1] at 100 Hz,
    round(duration_s * 100) values, envelope[i] the mean voiced-source gain over
    [10 i, 10 i + 10) ms (0 in gaps and pauses). Deterministic for a seed.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n = int(round(duration_s * sample_rate))
    syllables = plan_syllables(duration_s, seed)
    gain = _source_gain(syllables, n, sample_rate)

    train = _pulse_train(gain, syllables, sample_rate, seed)
    # glottal pulse shape plus lip radiation: about -6 dB/octave above ~100 Hz
    source = lfilter([1.0], [1.0, -0.96], train)
    aspiration = np.random.default_rng([seed, 5]).standard_normal(n) * gain * 0.02
    voiced = _formant_filter(source + aspiration, syllables, sample_rate)
    b, a = butter(2, 70.0 / (sample_rate / 2), btype="highpass")
    voiced = lfilter(b, a, voiced)
    audio = _OUTPUT_GAIN * voiced + 0.12 * _bursts(syllables, n, sample_rate, seed)
    audio = np.clip(audio, -0.99, 0.99).astype(np.float32)

    hop = sample_rate / ENVELOPE_RATE
    m = int(round(duration_s * ENVELOPE_RATE))
    edges = np.minimum(np.round(np.arange(m + 1) * hop).astype(int), n)
    csum = np.concatenate([[0.0], np.cumsum(gain)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)
    envelope = ((csum[edges[1:]] - csum[edges[:-1]]) / counts).astype(np.float32)
    return audio, envelope


def vowel_openness(duration_s: float, seed: int = 0, rate: float = ENVELOPE_RATE) -> np.ndarray:
    """How open the vowel being spoken is (VOWELS' second value), sampled at `rate` over the
    same timeline as synth_speech; held from one syllable to the next through gaps."""
    syllables = plan_syllables(duration_s, seed)
    m = int(round(duration_s * rate))
    t = (np.arange(m) + 0.5) / rate
    out = np.full(m, VOWELS[syllables[0].vowel][1] if syllables else 1.0, np.float32)
    for s in syllables:
        out[t >= s.start_s - 0.02] = VOWELS[s.vowel][1]
    return out

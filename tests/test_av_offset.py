import numpy as np
import pytest

from lokitalk.prepare.av_offset import OffsetConfig, estimate_offset, lagged_correlation, shift_audio, speech_energy_db


def syllables(n, fps, rng):
    """A talking mouth: syllables of random length (120-320 ms) and height, and pauses."""
    opening = np.zeros(n)
    k = 0
    while k < n:
        length = int(rng.integers(3, 9))
        if rng.random() < 0.12:  # a pause
            k += int(rng.integers(5, 15))
            continue
        opening[k:k + length] = rng.uniform(0.3, 1.0) * np.sin(np.linspace(0, np.pi, length))[: n - k]
        k += length
    return opening


def speech_for(opening, fps, sr, rng):
    """Noise-carrier 'speech' whose loudness follows the mouth, sample-accurate."""
    env = np.interp(np.arange(int(len(opening) / fps * sr)) / sr, np.arange(len(opening)) / fps, opening)
    carrier = rng.standard_normal(len(env)) * np.sin(2 * np.pi * 700 * np.arange(len(env)) / sr)
    return (0.3 * env * carrier + 1e-4 * rng.standard_normal(len(env))).astype(np.float32)


@pytest.mark.parametrize("planted_ms", [0.0, 200.0, -120.0, 80.0])
def test_a_planted_shift_is_found_within_one_frame(planted_ms, rng):
    fps, sr = 25.0, 16000
    opening = syllables(400, fps, rng)
    audio = speech_for(opening, fps, sr, rng)
    late = shift_audio(audio, -planted_ms / 1000, sr)  # audio late by planted_ms
    estimate = estimate_offset(opening, speech_energy_db(late, len(opening), fps, sr), fps)
    assert abs(estimate.offset_s * 1000 - planted_ms) < 1000 / fps
    assert estimate.confident
    corrected = shift_audio(late, estimate.applied_offset_s(), sr)
    again = estimate_offset(opening, speech_energy_db(corrected, len(opening), fps, sr), fps)
    assert abs(again.offset_s) < 1 / fps


def test_unrelated_audio_is_not_confident(rng):
    fps, sr = 25.0, 16000
    opening = syllables(300, fps, rng)
    other = speech_for(syllables(300, fps, np.random.default_rng(99)), fps, sr, rng)
    estimate = estimate_offset(opening, speech_energy_db(other, 300, fps, sr), fps)
    assert estimate.applied_offset_s() == 0.0 or not estimate.confident


def test_small_offsets_are_reported_but_not_applied():
    from lokitalk.prepare.av_offset import OffsetEstimate

    est = OffsetEstimate(0.03, 0.5, 0.4, True, np.zeros(1), np.zeros(1))
    assert est.applied_offset_s(OffsetConfig()) == 0.0
    assert OffsetEstimate(0.12, 0.5, 0.4, True, np.zeros(1), np.zeros(1)).applied_offset_s() == 0.12


def test_lagged_correlation_sign_convention():
    x = np.sin(np.arange(200) * 0.3)
    late = np.roll(x, 3)  # late[k] = x[k-3]: the audio comes 3 frames after the video
    corr = lagged_correlation(x, late, 6)
    assert int(np.argmax(corr)) - 6 == 3


def test_shift_audio_moves_content_and_keeps_length():
    audio = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(shift_audio(audio, 2 / 10, 10), [2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    np.testing.assert_array_equal(shift_audio(audio, -2 / 10, 10), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])

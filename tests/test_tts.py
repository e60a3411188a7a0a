"""Offline TTS (eSpeak NG from the espeakng-loader wheel) for the synthetic subject: plausible
speech (duration, loudness, pauses), phoneme timing that drives the mouth, determinism, the
fallback when it is not installed, and the subject's mouth following it."""

from __future__ import annotations

import numpy as np
import pytest

from lokitalk.synth import make_talking_clip
from lokitalk.synth import tts
from lokitalk.synth.speech import ENVELOPE_RATE
from lokitalk.synth.tts import Speech, join_speech, say, speech_for_text, synthetic_speech, tts_available

needs_tts = pytest.mark.skipif(not tts_available(), reason="espeakng-loader not installed (scripts/setup.sh)")

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it takes a nap."  # 15 words


@pytest.fixture(scope="module")
def spoken() -> Speech:
    if not tts_available():
        pytest.skip("espeakng-loader not installed (scripts/setup.sh)")
    return say(SENTENCE)


def _at_frames(track: np.ndarray, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """A 100 Hz track smoothed like the subject's mouth (30 ms) and sampled at the frame times."""
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(track.astype(np.float64), 3.0, mode="nearest")
    return np.interp(np.arange(num_frames) / fps, (np.arange(len(track)) + 0.5) / ENVELOPE_RATE, smooth)


def _rms(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(audio) // hop
    return np.sqrt(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


@needs_tts
def test_speech_has_a_plausible_duration_and_level(spoken):
    words = len(SENTENCE.split())
    speech_s = spoken.duration_s - 0.6  # minus the 0.3 s lead-in and tail
    # conversational English is ~2-4 words/s; eSpeak's default voice at 150 wpm speaks ~2.5
    assert 1.8 < words / speech_s < 4.5, (words, speech_s)
    assert spoken.audio.dtype == np.float32 and spoken.sample_rate == 16000
    assert abs(float(np.abs(spoken.audio).max()) - 0.5) < 1e-3  # normalised peak
    rms = _rms(spoken.audio)
    assert rms[:25].max() < 1e-3 and rms[-25:].max() < 1e-3  # silent lead-in and tail (250 ms)
    loud = rms > 0.1 * rms.max()
    assert 0.5 < loud.mean() < 0.95  # mostly speech, with gaps between words
    assert 0.05 < float(np.sqrt(np.mean(rms[loud] ** 2))) < 0.3  # speech level: -26 to -10 dBFS
    # energy sits in the speech band: most of it between 100 Hz and 4 kHz
    spectrum = np.abs(np.fft.rfft(spoken.audio)) ** 2
    freqs = np.fft.rfftfreq(len(spoken.audio), 1 / 16000)
    assert spectrum[(freqs > 100) & (freqs < 4000)].sum() / spectrum.sum() > 0.8


@needs_tts
def test_timeline_tracks_match_the_audio(spoken):
    m = int(round(spoken.duration_s * ENVELOPE_RATE))
    assert spoken.envelope.shape == spoken.openness.shape == (m,)
    assert spoken.envelope.min() >= 0 and spoken.envelope.max() <= 1 and spoken.envelope.max() > 0.9
    # the envelope is the audio's loudness: it correlates with the RMS at 100 Hz
    assert np.corrcoef(spoken.envelope[: len(_rms(spoken.audio))], _rms(spoken.audio)[:m])[0, 1] > 0.8
    times = [t for t, _ in spoken.phonemes]
    assert len(spoken.phonemes) > 30 and times == sorted(times)
    assert 0.25 < times[0] < 0.4  # the first phoneme starts after the lead-in
    words = [w for _, w in spoken.words]
    assert words[0] == "The" and "fox" in words and words[-1] == "nap"
    # lips shut on p/b/m: the openness is 0 at those phonemes
    for t, name in spoken.phonemes:
        if name.lstrip("',") in ("p", "b", "m"):
            assert spoken.openness[min(int(t * ENVELOPE_RATE) + 1, m - 1)] == 0.0
    assert spoken.openness.max() == 1.0  # an open vowel somewhere


@needs_tts
def test_same_text_same_audio(spoken):
    again = say(SENTENCE)
    assert np.array_equal(again.audio, spoken.audio) and again.phonemes == spoken.phonemes
    other = say("A different sentence.")
    assert other.duration_s < spoken.duration_s


@needs_tts
def test_joined_speech_keeps_the_timing():
    a, b = say("One."), say("Two three.")
    joined = join_speech([a, b], gap_s=0.5)
    assert len(joined.audio) == len(a.audio) + len(b.audio) + 8000
    assert joined.words[-1][1] == "three" and joined.words[-1][0] == pytest.approx(
        b.words[-1][0] + a.duration_s + 0.5, abs=1e-6)
    assert len(joined.envelope) == int(round(joined.duration_s * ENVELOPE_RATE))


def test_fallback_without_espeak(monkeypatch):
    def missing(*args, **kwargs):
        raise tts.TTSUnavailable("not installed")

    monkeypatch.setattr(tts, "_espeak", missing)
    with pytest.raises(tts.TTSUnavailable):
        say("Hello there.")
    speech = speech_for_text("Hello there, this is a sentence of nine words.")
    assert speech.engine.startswith("synthetic")
    assert 3.0 < speech.duration_s < 6.0
    assert len(speech.envelope) == int(round(speech.duration_s * ENVELOPE_RATE)) and speech.envelope.max() > 0.5


def test_a_missing_worker_reports_unavailable(monkeypatch, tmp_path):
    monkeypatch.setattr(tts, "_WORKER", tmp_path / "absent.py")
    with pytest.raises(tts.TTSUnavailable):
        say("Hello.")


def test_the_subject_speaks_given_speech():
    speech = synthetic_speech(3.0, seed=4)
    clip = make_talking_clip(duration_s=None, size=96, seed=1, speech=speech)
    assert clip.num_frames == 75 and np.array_equal(clip.audio, speech.audio)
    # the mouth follows envelope x openness (smoothed, at 25 fps)
    target = _at_frames(speech.mouth_target, 75)
    assert np.corrcoef(clip.mouth_opening, target)[0, 1] > 0.99
    padded = make_talking_clip(duration_s=4.0, size=96, seed=1, speech=speech)
    assert padded.num_frames == 100 and not padded.audio[48000:].any()


@needs_tts
def test_the_subject_mouth_follows_tts_words(spoken):
    clip = make_talking_clip(duration_s=None, size=96, seed=0, speech=spoken)
    assert clip.num_frames == int(round(spoken.duration_s * 25))
    target = _at_frames(spoken.mouth_target, clip.num_frames)
    assert np.corrcoef(clip.mouth_opening, target)[0, 1] > 0.99
    assert clip.mouth_opening.max() > 0.6 and clip.mouth_opening[:5].max() < 0.05  # closed in the lead-in

"""Offline text-to-speech for the synthetic subject: real words, with the timing the mouth needs.

The engine is eSpeak NG (GPL-3.0) as shipped in the `espeakng-loader` wheel (its shared library
and voice data, no system package, no network), driven through ctypes: `scripts/setup.sh`
installs it. It speaks a sentence into 16 kHz mono audio and reports each phoneme with its start
time, which gives the synthetic subject's mouth two tracks on the 100 Hz timeline of
`lokitalk.synth.speech`:

- `envelope`: the loudness of the speech (RMS over 10 ms, normalised so the loud vowels reach
  ~1, with the noise floor at 0);
- `openness`: how far the phoneme being spoken opens the jaw (open vowels 1, close vowels 0.5,
  most consonants 0.4, f/v 0.15, the lips shut for p/b/m, 0 in pauses).

When eSpeak NG is not installed, `speech_for_text` falls back to the synthetic speech-like
signal of `lokitalk.synth.speech` (not words, but with a known envelope), sized to how long the
sentence would take to say, and says so in `Speech.engine`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .speech import ENVELOPE_RATE, synth_speech, vowel_openness

SAMPLE_RATE = 16000
DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 150

_EVENT_WORD, _EVENT_PHONEME = 1, 7
_WORKER = Path(__file__).with_name("espeak_worker.py")


class TTSUnavailable(RuntimeError):
    """eSpeak NG is not installed (or would not start)."""


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 mono at sample_rate
    envelope: np.ndarray  # [M] loudness in [0, 1] at ENVELOPE_RATE (100 Hz), M = round(duration x 100)
    openness: np.ndarray  # [M] how far the current phoneme opens the jaw, in [0, 1]
    text: str
    engine: str  # "espeak-ng 1.52.0 (en-us)" or "synthetic (no TTS installed)"
    sample_rate: int = SAMPLE_RATE
    phonemes: list[tuple[float, str]] = field(default_factory=list)  # (start s, eSpeak mnemonic)
    words: list[tuple[float, str]] = field(default_factory=list)  # (start s, word)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def mouth_target(self) -> np.ndarray:
        """What the synthetic subject's mouth follows (before its smoothing): envelope x openness."""
        return self.envelope * self.openness


def _espeak(text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, int, str, list]:
    """(int16 PCM, its sample rate, eSpeak NG's version, events) from the worker process."""
    with tempfile.TemporaryDirectory(prefix="lokitalk_tts_") as tmp:
        pcm_path = Path(tmp) / "speech.pcm"
        request = json.dumps({"text": text, "voice": voice, "rate_wpm": rate_wpm, "pitch": pitch})
        try:
            done = subprocess.run([sys.executable, str(_WORKER), str(pcm_path)], input=request, text=True,
                                  capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise TTSUnavailable(f"eSpeak NG did not run: {err}") from err
        if done.returncode != 0:
            raise TTSUnavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                                 else f"eSpeak NG failed (exit {done.returncode})")
        info = json.loads(done.stdout)
        pcm = np.frombuffer(pcm_path.read_bytes(), dtype="<i2").copy()
    return pcm, int(info["sample_rate"]), str(info["version"]), info["events"]


@lru_cache(maxsize=1)
def tts_available() -> bool:
    """Whether eSpeak NG (the espeakng-loader wheel) is installed in this environment."""
    try:
        import espeakng_loader
    except ImportError:
        return False
    try:
        return Path(espeakng_loader.get_library_path()).is_file() and Path(espeakng_loader.get_data_path()).is_dir()
    except RuntimeError:
        return False


def _phoneme_openness(name: str) -> float:
    name = name.strip().lstrip("',%=")  # stress marks before the phoneme
    if not name or name[0] in "_|;:":  # pauses and syllable marks
        return 0.0
    c = name[0]
    if c in "aAV0":
        return 1.0
    if c in "oO":
        return 0.85
    if c in "eE3@":
        return 0.7
    if c in "iIuUy":
        return 0.5
    if c in "pbm":
        return 0.0
    if c in "fv":
        return 0.15
    return 0.4


def _rms_envelope(audio: np.ndarray, sample_rate: int, frames: int) -> np.ndarray:
    hop = sample_rate / ENVELOPE_RATE
    edges = np.minimum(np.round(np.arange(frames + 1) * hop).astype(int), len(audio))
    csum = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)
    rms = np.sqrt((csum[edges[1:]] - csum[edges[:-1]]) / counts)
    if not rms.any():
        return rms.astype(np.float32)
    loud = float(np.percentile(rms[rms > 0], 95))
    floor = 0.05 * loud
    return np.clip((rms - floor) / max(loud - floor, 1e-9), 0.0, 1.0).astype(np.float32)


def say(text: str, voice: str = DEFAULT_VOICE, rate_wpm: int = DEFAULT_RATE_WPM, pitch: int = 50,
        sample_rate: int = SAMPLE_RATE, lead_in_s: float = 0.3, tail_s: float = 0.3) -> Speech:
    """Speak `text` with eSpeak NG (offline). Raises TTSUnavailable when it is not installed.

    The audio gets `lead_in_s` of silence before and `tail_s` after the speech; its level is
    normalised to peaks near 0.5 full scale. Deterministic for the same inputs.
    """
    from scipy.signal import resample_poly

    if not text.strip():
        raise ValueError("nothing to say: the text is empty")
    pcm, native, version, events = _espeak(text, voice, rate_wpm, pitch)
    audio = pcm.astype(np.float64) / 32768.0
    if native != sample_rate:
        g = np.gcd(native, sample_rate)
        audio = resample_poly(audio, sample_rate // g, native // g)
    # trim eSpeak's own leading/trailing silence, then pad to the requested margins
    loud = np.nonzero(np.abs(audio) > 1e-3)[0]
    if len(loud) == 0:
        raise TTSUnavailable("eSpeak NG produced silence")
    start = int(loud[0])
    audio = audio[start : int(loud[-1]) + 1]
    peak = float(np.abs(audio).max())
    audio = audio * (0.5 / peak)
    pad0, pad1 = int(round(lead_in_s * sample_rate)), int(round(tail_s * sample_rate))
    audio = np.concatenate([np.zeros(pad0), audio, np.zeros(pad1)]).astype(np.float32)
    shift = lead_in_s - start / sample_rate  # eSpeak time -> our time

    frames = int(round(len(audio) / sample_rate * ENVELOPE_RATE))
    envelope = _rms_envelope(audio, sample_rate, frames)
    phonemes = sorted((t_ms / 1000.0 + shift, name) for kind, t_ms, _, _, name in events if kind == _EVENT_PHONEME)
    openness = np.zeros(frames, np.float32)
    centres = (np.arange(frames) + 0.5) / ENVELOPE_RATE
    for k, (t0, name) in enumerate(phonemes):
        t1 = phonemes[k + 1][0] if k + 1 < len(phonemes) else centres[-1] + 1.0
        openness[(centres >= t0) & (centres < t1)] = _phoneme_openness(name)
    if not phonemes:  # no events (an old library): loudness alone drives the mouth
        openness[:] = 0.8
    words = []
    raw = text.encode("utf-8")
    for kind, t_ms, pos, length, _ in events:
        if kind == _EVENT_WORD:  # pos: 1-based character position; take the whole word there
            word = raw[max(pos - 1, 0):].decode(errors="replace").split()
            words.append((t_ms / 1000.0 + shift, word[0].strip(".,;:!?\"'") if word else ""))
    return Speech(audio=audio, envelope=envelope, openness=openness, text=text,
                  engine=f"espeak-ng {version} ({voice})", sample_rate=sample_rate,
                  phonemes=phonemes, words=sorted(words))


def estimated_duration_s(text: str, rate_wpm: int = DEFAULT_RATE_WPM) -> float:
    """About how long `text` takes to say (words at `rate_wpm`, plus pauses at punctuation)."""
    words = max(1, len(text.split()))
    pauses = sum(text.count(c) for c in ".,;:!?")
    return 60.0 * words / rate_wpm + 0.25 * pauses + 0.6


def synthetic_speech(duration_s: float, text: str = "", seed: int = 0, sample_rate: int = SAMPLE_RATE) -> Speech:
    """The speech-like signal of lokitalk.synth.speech in the same form (no words)."""
    audio, envelope = synth_speech(duration_s, sample_rate, seed)
    return Speech(audio=audio, envelope=envelope, openness=vowel_openness(duration_s, seed), text=text,
                  engine="synthetic (no TTS installed)", sample_rate=sample_rate)


def speech_for_text(text: str, seed: int = 0, voice: str = DEFAULT_VOICE, rate_wpm: int = DEFAULT_RATE_WPM,
                    pitch: int = 50, sample_rate: int = SAMPLE_RATE) -> Speech:
    """`say(text)` when eSpeak NG is installed, else synthetic speech as long as the text would be."""
    try:
        return say(text, voice=voice, rate_wpm=rate_wpm, pitch=pitch, sample_rate=sample_rate)
    except TTSUnavailable:
        return synthetic_speech(estimated_duration_s(text, rate_wpm), text, seed, sample_rate)


def join_speech(parts: list[Speech], gap_s: float = 0.25) -> Speech:
    """One Speech from several, with `gap_s` of silence between them (timings shifted to match)."""
    if not parts:
        raise ValueError("nothing to join")
    rate = parts[0].sample_rate
    if any(p.sample_rate != rate for p in parts):
        raise ValueError("all parts must have the same sample rate")
    gap = int(round(gap_s * rate))
    audio, phonemes, words = [], [], []
    offset = 0
    for k, p in enumerate(parts):
        if k:
            audio.append(np.zeros(gap, np.float32))
            offset += gap
        t0 = offset / rate
        audio.append(p.audio)
        phonemes += [(t + t0, n) for t, n in p.phonemes]
        words += [(t + t0, w) for t, w in p.words]
        offset += len(p.audio)
    audio = np.concatenate(audio)
    frames = int(round(len(audio) / rate * ENVELOPE_RATE))
    env_all, opn_all = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    offset = 0
    for k, p in enumerate(parts):
        if k:
            offset += gap
        i0 = int(round(offset / rate * ENVELOPE_RATE))
        n = max(0, min(len(p.envelope), frames - i0))
        env_all[i0 : i0 + n] = p.envelope[:n]
        opn_all[i0 : i0 + n] = p.openness[:n]
        offset += len(p.audio)
    engines = sorted({p.engine for p in parts})
    return Speech(audio=audio, envelope=env_all, openness=opn_all, text=" ".join(p.text for p in parts),
                  engine=" + ".join(engines), sample_rate=rate, phonemes=phonemes, words=words)

"""Audio loading (any file FFmpeg reads, to mono float at one rate) and 16-bit WAV writing."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import av
import numpy as np

from lokitalk.errors import InputError
from lokitalk.media.video import check_file, error_reason, open_media, partial_path

SAMPLE_RATE = 16000

# Decoded audio past the declared stream duration, up to this much, is codec padding (_trim_padding).
MAX_PADDING_S = 0.1


def _audio_stream(
    container: av.container.InputContainer, path: Path
) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise InputError(f"{path} has no audio stream")
    return container.streams.audio[0]


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of `path` as float32 mono in [-1, 1] at `sample_rate`.

    Channels are averaged (FFmpeg's own stereo->mono matrix uses other gains); the rate is changed
    by FFmpeg's windowed-sinc resampler, so tones keep their pitch and content above the new
    Nyquist frequency is filtered out rather than aliased.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    chunks: list[np.ndarray] = []
    with open_media(path, "an audio or video file") as container:
        stream = _audio_stream(container, path)
        # Planar float keeps channels apart for the average; layout and channel count pass through.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                chunks.extend(_mono(f) for f in resampler.resample(frame))
            chunks.extend(_mono(f) for f in resampler.resample(None))  # flush the filter's tail
        except (av.FFmpegError, ValueError) as err:
            # ValueError: PyAV's resampler refuses a mid-stream change of layout or rate.
            raise InputError(
                f"{path} has an audio stream that cannot be decoded: {error_reason(err)}"
            ) from err
        declared = None
        if stream.duration and stream.time_base:
            declared = float(stream.duration * stream.time_base)
    if not chunks:
        raise InputError(f"{path} has an audio stream with no decodable samples")
    audio = _trim_padding(np.concatenate(chunks), declared, sample_rate)
    return np.clip(audio, -1.0, 1.0, out=audio)  # resampling ringing can overshoot full scale


def _trim_padding(audio: np.ndarray, declared_s: float | None, sample_rate: int) -> np.ndarray:
    """Drop the encoder's end padding: AAC decodes whole 1024-sample frames and the mp4 demuxer
    does not trim the last one, so audio comes out up to one frame (64 ms at 16 kHz) longer than
    the stream's declared duration.
    Only a small excess is trimmed, so a header with a wrong duration never cuts real audio."""
    if declared_s is None:
        return audio
    excess = len(audio) - round(declared_s * sample_rate)
    return audio[: len(audio) - excess] if 0 < excess <= MAX_PADDING_S * sample_rate else audio


def _mono(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().mean(axis=0, dtype=np.float32)


def has_audio_stream(path: str | Path) -> bool:
    """Whether `path` has an audio stream. InputError if the file is missing, empty or a directory;
    False for a file FFmpeg cannot open at all (it has no audio stream anyone can use)."""
    path = Path(path)
    check_file(path)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            return len(container.streams.audio) > 0
    except (av.FFmpegError, OSError):
        return False


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio in [-1, 1] (shape (samples,) or (samples, channels)) as 16-bit PCM WAV.

    Written under a temporary name in the same folder and renamed, so `path` is never partial.
    The stdlib writer is enough for PCM and is exact (no codec in between).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ValueError(f"audio must be (samples,) or (samples, channels), got {np.shape(audio)}")
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(pcm.tobytes())  # row-major (samples, channels) is WAV's interleaving
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

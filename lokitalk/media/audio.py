"""Audio loading (any file FFmpeg reads, to mono float at one rate) and 16-bit WAV writing."""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import BinaryIO, Iterator

import av
import numpy as np

from lokitalk.errors import InputError
from lokitalk.media.files import check_file, error_reason, open_media, partial_path

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
    return np.concatenate(list(iter_audio(path, sample_rate)))


def iter_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """`load_audio`'s samples in pieces as they are decoded (bounded memory on long files): the
    same values, concatenated. The last MAX_PADDING_S are held back until the end, where the
    encoder's padding is trimmed (`_trim_padding`). Errors are raised by the first `next`."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    with open_media(path, "an audio or video file") as container:
        stream = _audio_stream(container, path)
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        keep = round(MAX_PADDING_S * sample_rate) if declared is not None else 0
        held, given = np.zeros(0, np.float32), 0
        for chunk in _decoded(container, stream, sample_rate, path):
            held = np.concatenate([held, chunk])
            if len(held) > keep:
                ready, held = held[:len(held) - keep], held[len(held) - keep:]
                given += len(ready)
                yield np.clip(ready, -1.0, 1.0)  # resampling ringing can overshoot full scale
    if given + len(held) == 0:
        raise InputError(f"{path} has an audio stream with no decodable samples")
    whole = given + len(held)
    excess = whole - len(_trim_padding(np.empty(whole, np.float32), declared, sample_rate))
    if len(held) - excess > 0:
        yield np.clip(held[:len(held) - excess], -1.0, 1.0)


def _decoded(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, sample_rate: int,
             path: Path) -> Iterator[np.ndarray]:
    # Planar float keeps channels apart for the average; layout and channel count pass through.
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    try:
        for frame in container.decode(stream):
            yield from (_mono(f) for f in resampler.resample(frame))
        yield from (_mono(f) for f in resampler.resample(None))  # flush the filter's tail
    except (av.FFmpegError, ValueError) as err:
        # ValueError: PyAV's resampler refuses a mid-stream change of layout or rate.
        raise InputError(f"{path} has an audio stream that cannot be decoded: {error_reason(err)}") from err


def iter_raw_pcm(source: BinaryIO, rate: int, sample_rate: int = SAMPLE_RATE,
                 chunk_s: float = 0.02) -> Iterator[np.ndarray]:
    """Raw 16-bit little-endian mono PCM at `rate` (e.g. `ffmpeg -f s16le -ac 1 -ar 16000 -` or
    a microphone pipe) as float32 pieces at `sample_rate`, each as soon as `chunk_s` of it has
    been read (the last may be shorter)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    resampler = av.AudioResampler(format="fltp", rate=sample_rate) if rate != sample_rate else None
    size = max(2, 2 * round(chunk_s * rate))
    carry = b""
    while True:
        data = source.read(size - len(carry))
        if not data:
            break
        carry += data
        if len(carry) < size:
            continue
        samples, carry = np.frombuffer(carry, "<i2"), b""
        yield from _pcm_to_float(samples, rate, resampler)
    if len(carry) >= 2:
        yield from _pcm_to_float(np.frombuffer(carry[:len(carry) // 2 * 2], "<i2"), rate, resampler)
    if resampler is not None:
        yield from (_mono(f) for f in resampler.resample(None))


def _pcm_to_float(samples: np.ndarray, rate: int, resampler) -> Iterator[np.ndarray]:
    if resampler is None:
        yield samples.astype(np.float32) / 32768.0
        return
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples)[None, :], format="s16", layout="mono")
    frame.sample_rate = rate
    yield from (np.clip(_mono(f), -1.0, 1.0) for f in resampler.resample(frame))


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

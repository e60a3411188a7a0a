"""H.264 + AAC mp4 writing through PyAV: whole clips (`write_video`) and live fragmented streams
(`LiveVideoWriter`). Files appear at their path only once complete.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import av
import numpy as np

from lokitalk.media.files import partial_path


def _even_rgb(image: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """Validate one RGB frame and pad an odd height/width by repeating the last row/column
    (yuv420p halves chroma resolution, so x264 needs even sizes)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frames must be uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    if shape is not None and image.shape != shape:
        raise ValueError(f"all frames must have the same shape: {image.shape} after {shape}")
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(image)


def _mono_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono, shape (samples,), got {audio.shape}")
    return np.clip(audio, -1.0, 1.0)


class _AudioFeed:
    """Encodes a mono float track in step with the video so the muxer can interleave as it goes.
    The track may grow while it is encoded (`append`: a live stream's audio as it arrives)."""

    CHUNK = 1024  # the AAC frame size: each frame sent is one encoder frame

    def __init__(self, container: av.container.OutputContainer, audio: np.ndarray, sample_rate: int):
        self.container = container
        self.pending = np.asarray(audio, np.float32)  # received, not yet encoded
        self.sample_rate = sample_rate
        self.stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        self.sent = 0

    def append(self, audio: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, _mono_float(audio)])

    def until(self, seconds: float | None) -> None:
        """Encode the samples received, up to `seconds` (all of them if None)."""
        stop = self.sent + len(self.pending)
        if seconds is not None:
            stop = min(stop, round(seconds * self.sample_rate))
        while self.sent < stop:
            count = min(stop - self.sent, self.CHUNK)
            chunk, self.pending = self.pending[:count], self.pending[count:]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self.sent
            frame.time_base = Fraction(1, self.sample_rate)
            self.container.mux(self.stream.encode(frame))
            self.sent += len(chunk)

    def finish(self, seconds: float | None = None) -> None:
        """Encode what is left (up to `seconds`: the rest is dropped) and flush the encoder."""
        self.until(seconds)
        self.pending = self.pending[:0]
        self.container.mux(self.stream.encode(None))


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode RGB uint8 frames as an H.264 (yuv420p) mp4, with a mono AAC track if `audio` is given.

    `metadata` becomes container tags (any key: written with movflags use_metadata_tags).

    Frames are consumed lazily (a generator is fine). Odd sizes are padded by one pixel. The file
    appears at `path` only once complete: it is written under a hidden temporary name and renamed.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    rate = Fraction(fps).limit_denominator(100_000)  # 29.97... -> 30000/1001 exactly
    samples = _mono_float(audio) if audio is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": flags}) as container:
            for key, value in (metadata or {}).items():
                container.metadata[key] = value
            _encode_all(container, iter(frames), rate, samples, sample_rate, crf, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _encode_all(
    container: av.container.OutputContainer,
    frames: Iterator[np.ndarray],
    rate: Fraction,
    audio: np.ndarray | None,
    sample_rate: int,
    crf: int,
    path: Path,
) -> None:
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    shape = np.asarray(first).shape
    image = _even_rgb(first, None)

    # Both streams must exist before the first packet is muxed (that writes the header).
    video = container.add_stream("libx264", rate=rate, options={"crf": str(crf)})
    video.width, video.height = image.shape[1], image.shape[0]
    video.pix_fmt = "yuv420p"
    feed = _AudioFeed(container, audio, sample_rate) if audio is not None else None

    index = 0
    while image is not None:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = index, 1 / rate
        container.mux(video.encode(frame))
        index += 1
        if feed is not None:
            feed.until(index / rate)
        nxt = next(frames, None)
        image = None if nxt is None else _even_rgb(nxt, shape)
    container.mux(video.encode(None))
    if feed is not None:
        feed.finish()


class LiveVideoWriter:
    """H.264 + AAC in a fragmented MP4, written while the frames are made (a live stream).

    The header goes out with the first frame and then a fragment per second of video (a key
    frame every second; x264's zero-latency tuning, so a frame is encoded as soon as it arrives),
    so a reader of `target` can play the stream as it grows. Audio is added as it arrives
    (`add_audio`) and muxed in step with the frames. `target` is a path, written under a hidden
    temporary name and renamed on `close` (never left half-written: `abort` removes it), or a
    binary file object such as stdout, which gets the bytes as they are made.
    """

    def __init__(self, target: str | Path | BinaryIO, fps: float, sample_rate: int = 16000, crf: int = 18,
                 metadata: dict[str, str] | None = None):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.rate = Fraction(fps).limit_denominator(100_000)
        self.target, self.sample_rate, self.crf, self.metadata = target, sample_rate, crf, metadata or {}
        self.path = None if hasattr(target, "write") else Path(target)
        self.tmp = None if self.path is None else partial_path(self.path)
        self.container = self.video = self.feed = None
        self.early_audio = np.zeros(0, np.float32)
        self.shape: tuple[int, ...] | None = None
        self.frames = 0

    def _open(self, image: np.ndarray) -> None:
        flags = "+frag_keyframe+empty_moov+delay_moov+default_base_moof" + ("+use_metadata_tags" if self.metadata else "")
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        sink = str(self.tmp) if self.path is not None else self.target
        self.container = av.open(sink, mode="w", format="mp4", options={"movflags": flags})
        for key, value in self.metadata.items():
            self.container.metadata[key] = value
        keyint = str(max(1, round(float(self.rate))))
        self.video = self.container.add_stream("libx264", rate=self.rate, options={
            "crf": str(self.crf), "tune": "zerolatency", "g": keyint, "keyint_min": keyint})
        self.video.width, self.video.height = image.shape[1], image.shape[0]
        self.video.pix_fmt = "yuv420p"
        self.feed = _AudioFeed(self.container, self.early_audio, self.sample_rate)

    def add_audio(self, audio: np.ndarray) -> None:
        if self.feed is None:
            self.early_audio = np.concatenate([self.early_audio, _mono_float(audio)])
        else:
            self.feed.append(audio)

    def write(self, frame: np.ndarray) -> None:
        shape = np.asarray(frame).shape
        image = _even_rgb(frame, self.shape)
        if self.container is None:
            self._open(image)
        self.shape = shape
        picture = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        picture.pts, picture.time_base = self.frames, 1 / self.rate
        self.container.mux(self.video.encode(picture))
        self.frames += 1
        self.feed.until(self.frames / self.rate)

    def close(self) -> Path | None:
        """Flush both encoders (audio up to the last frame's end) and, for a path, rename the
        finished file into place. Returns the path (None for a file object)."""
        if self.container is None:
            raise ValueError(f"no frames to write to {self.target}")
        try:
            self.container.mux(self.video.encode(None))
            self.feed.finish(self.frames / self.rate)
            self.container.close()
            if self.path is not None:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop without a finished file: the temporary file is removed."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
            self.container = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)

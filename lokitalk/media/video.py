"""Video probing, fixed-rate frame streaming and H.264 writing, all through PyAV.

Frames are resampled by presentation time (not by frame index), so variable-frame-rate phone clips
and 29.97 fps sources land on the same 25 fps grid the rest of the pipeline assumes.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import av
import numpy as np

from lokitalk.errors import InputError

# Decoding that ends before this fraction of the declared duration means the file lost its tail.
TRUNCATION_RATIO = 0.9

# Magic bytes of containers we could plausibly be handed. A file that starts like one of these but
# that FFmpeg cannot open is reported as damaged rather than as "not a video".
_MEDIA_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / m4a
    (4, b"moov"),  # old QuickTime
    (4, b"mdat"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI / WAV
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"ID3"),  # mp3 with tag
    (0, b"fLaC"),
)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    num_frames: int  # source frames (estimated if the container lacks the count)
    codec: str
    has_audio: bool


# --------------------------------------------------------------------------- opening files


def check_file(path: Path) -> None:
    """InputError unless `path` is an existing, non-empty regular file."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")


def _looks_like_media(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[at : at + len(magic)] == magic for at, magic in _MEDIA_MAGIC)


def error_reason(err: BaseException) -> str:
    # FFmpegError's str() repeats errno and filename; strerror is the readable part.
    return str(getattr(err, "strerror", None) or err).strip().rstrip(".")


def open_media(path: Path, what: str = "a video file") -> av.container.InputContainer:
    """Open `path` for reading, turning every failure into a one-line InputError.

    `what` only words the "is not ..." message ("a video file", "an audio or video file").
    """
    check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as err:
        if _looks_like_media(path):
            # Typical for an mp4 cut short: the index (moov atom) sits at the end and is gone.
            raise InputError(
                f"{path} is truncated or corrupt: "
                f"FFmpeg cannot read the container ({error_reason(err)})"
            ) from err
        raise InputError(f"{path} is not {what}") from err
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{path} cannot be read: {error_reason(err)}") from err


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream; cover art in audio files (attached pictures) does not count."""
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context.width > 0 and stream.codec_context.height > 0:
            return stream
    raise InputError(f"{path} is not a video file (it has no video stream)")


# --------------------------------------------------------------------------- probing


def _declared_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    # Prefer the video stream's own duration: the container's covers audio too, which often runs longer.
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _scan_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[int, float | None]:
    """Count packets and find where the stream ends without decoding (cheap), for containers
    (raw .h264, some .mkv) that carry no duration or frame count."""
    count, first, end = 0, None, None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            if packet.pts is not None and packet.time_base:
                first = packet.pts if first is None else min(first, packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
    except av.FFmpegError:
        pass  # a damaged tail; iter_frames reports it properly
    if first is None or end is None or end <= first:
        return count, None
    return count, float((end - first) * stream.time_base)


def _nominal_rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Size, rate, duration and codec of a video file; InputError if it is not a readable video."""
    path = Path(path)
    with open_media(path) as container:
        stream = video_stream(container, path)
        duration = _declared_duration(container, stream)
        fps = _nominal_rate(stream)
        count = stream.frames or 0
        if duration is None or (count <= 0 and fps is None):
            scanned, scanned_duration = _scan_packets(container, stream)
            count = count or scanned
            duration = duration if duration is not None else scanned_duration
        if fps is None and count and duration:
            fps = count / duration
        if fps is None:
            raise InputError(f"{path} is not a usable video: its frame rate cannot be determined")
        if duration is None:
            duration = count / fps if count else 0.0
        if count <= 0:
            count = round(duration * fps)
        return VideoInfo(
            path=path,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            duration_s=duration,
            num_frames=int(count),
            codec=stream.codec_context.name,
            has_audio=len(container.streams.audio) > 0,
        )


# --------------------------------------------------------------------------- reading frames


def iter_frames(path: str | Path, fps: float = 25.0) -> Iterator[np.ndarray]:
    """Stream RGB uint8 HxWx3 frames resampled to `fps`.

    Output frame k shows the source frame on screen at time k/fps: the last one whose presentation
    time (relative to the first frame) is <= k/fps, for k = 0 .. floor(duration*fps)-1. The file is
    checked up front (InputError before the first frame); damage found later is raised mid-stream.
    Repeated frames are separate arrays, so callers may modify what they get.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    info = probe_video(path)
    return _resampled_frames(info, float(fps))


def _truncated(info: VideoInfo, stopped_at: float) -> InputError:
    return InputError(
        f"{info.path} is truncated or corrupt: "
        f"video stops at {stopped_at:.1f}s of {info.duration_s:.1f}s"
    )


def _decode_tolerantly(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, info: VideoInfo
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order, skipping packets the decoder rejects.

    Like the ffmpeg CLI, one bad packet (typically the cut-off last one) costs a frame, not the
    clip; the caller's coverage check catches real truncation. A read error ends the data. More
    rejected packets than the truncation margin allows means the file is corrupt, not clipped.
    """
    allowed = max(2, math.ceil((1 - TRUNCATION_RATIO) * info.num_frames))
    rejected = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as err:
            rejected += 1
            if rejected > allowed:
                raise InputError(
                    f"{info.path} is truncated or corrupt: {rejected} video packets cannot be decoded "
                    f"({error_reason(err)})"
                ) from err
            continue
        yield from frames


def _resampled_frames(info: VideoInfo, fps: float) -> Iterator[np.ndarray]:
    # The tiny epsilon keeps floor() stable when duration*fps is a whole number in exact arithmetic.
    num_out = math.floor(info.duration_s * fps + 1e-6)
    if num_out <= 0:
        return
    with open_media(info.path) as container:
        stream = video_stream(container, info.path)
        stream.thread_type = "AUTO"  # frame + slice threads
        time_base = stream.time_base
        # pts are quantised to the time base, so "<= k/fps" must forgive half a tick.
        slack = max(1e-6, float(time_base) / 2) if time_base else 1e-6
        # One scaler reused for all frames: half the cost of frame.to_ndarray(format="rgb24") per frame.
        to_rgb = av.video.reformatter.VideoReformatter()

        k = 0
        held: av.VideoFrame | None = None  # on screen now; converted to RGB only if it is shown
        first_pts: int | None = None
        decoded = 0
        end_time = 0.0  # where the decoded video ends (last frame's time + its duration)

        for frame in _decode_tolerantly(container, stream, info):
            if frame.pts is None or time_base is None:
                t = decoded / info.fps  # no timestamps at all (raw streams): trust the nominal rate
            else:
                first_pts = frame.pts if first_pts is None else first_pts
                t = float((frame.pts - first_pts) * time_base)
            decoded += 1
            if frame.duration and time_base:
                frame_duration = float(frame.duration * time_base)
            else:
                frame_duration = 1 / info.fps
            end_time = max(end_time, t + frame_duration)

            # Every output time before this frame appears still shows the held frame. Each emission
            # converts afresh: repeats are rare (upsampling, VFR gaps) and callers may then mutate.
            while held is not None and k < num_out and k / fps + slack < t:
                yield _rgb(to_rgb, held)
                k += 1
            if k >= num_out:
                return  # the rest lies past the declared duration
            held = frame

        if held is None:
            raise InputError(f"{info.path} is truncated or corrupt: no video frame can be decoded")
        if end_time < TRUNCATION_RATIO * info.duration_s:
            raise _truncated(info, end_time)
        # Threaded decoding drops damaged frames silently, so damage in the middle shows up only as a
        # shortfall against the container's frame count (when it has one; else it is an estimate).
        if stream.frames and decoded < TRUNCATION_RATIO * stream.frames:
            raise InputError(
                f"{info.path} is truncated or corrupt: "
                f"only {decoded} of {stream.frames} video frames can be decoded"
            )
        # The tail: the last frame stays on screen until the declared end.
        for _ in range(k, num_out):
            yield _rgb(to_rgb, held)


def _rgb(reformatter: av.video.reformatter.VideoReformatter, frame: av.VideoFrame) -> np.ndarray:
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def read_frames(
    path: str | Path,
    fps: float = 25.0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """All frames of iter_frames as one [N,h,w,3] array, `transform` applied to each while streaming.

    The count is known up front, so the result is allocated once: peak memory is the result itself.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    info = probe_video(path)
    count = math.floor(info.duration_s * fps + 1e-6)  # exactly what _resampled_frames yields
    out: np.ndarray | None = None
    for n, frame in enumerate(_resampled_frames(info, float(fps))):
        if transform is not None:
            frame = np.asarray(transform(frame))
        if out is None:
            out = np.empty((count, *frame.shape), dtype=frame.dtype)
        elif frame.shape != out.shape[1:]:
            raise ValueError(
                f"transform returned shape {frame.shape}, earlier frames were {out.shape[1:]}"
            )
        out[n] = frame
    if out is None:
        return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)
    return out


# --------------------------------------------------------------------------- writing


def partial_path(path: Path) -> Path:
    """A hidden, unique sibling of `path` to write into before the final rename.

    Same folder, so os.replace is an atomic rename on one filesystem; the name cannot be mistaken
    for a finished output (hidden, '.partial', no media extension).
    """
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


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

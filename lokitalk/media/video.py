"""Video probing and fixed-rate frame streaming through PyAV (writing: video_writer.py).

Frames are resampled by presentation time (not by frame index), so variable-frame-rate phone clips
and 29.97 fps sources land on the same 25 fps grid the rest of the pipeline assumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from lokitalk.errors import InputError
from lokitalk.media.files import error_reason, open_media

# Decoding that ends before this fraction of the declared duration means the file lost its tail.
TRUNCATION_RATIO = 0.9


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

"""What happens to a video in the wild, as functions on frame lists (shared by tests and benchmarks).

Every attack takes and returns a list of RGB uint8 HxWx3 frames. The H.264 re-encode runs a real
libx264 encoder and decoder through PyAV in memory (no container, no temporary file), so what it
returns is exactly what a viewer of the re-encoded video would decode.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Sequence

import av
import cv2
import numpy as np

CROP_ANCHORS = ("center", "top-left", "top-right", "bottom-left", "bottom-right")


def reencode_h264(
    frames: Iterable[np.ndarray], crf: int, fps: float = 25.0, preset: str = "medium"
) -> list[np.ndarray]:
    """Encode `frames` with libx264 (yuv420p, constant rate factor `crf`) and decode them again.

    Odd sizes are padded by one edge pixel for 4:2:0 and cropped back after decoding.
    """
    frames = list(frames)
    if not frames:
        return []
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    rate = Fraction(fps).limit_denominator(100_000)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height = pw, ph
    enc.pix_fmt = "yuv420p"
    enc.time_base = 1 / rate
    enc.framerate = rate
    enc.options = {"crf": str(int(crf)), "preset": preset}
    dec = av.CodecContext.create("h264", "r")
    out: list[np.ndarray] = []

    def drain(packets: list[av.Packet]) -> None:
        for packet in packets:
            for frame in dec.decode(packet):
                out.append(frame.to_ndarray(format="rgb24")[:h, :w])

    for i, image in enumerate(frames):
        image = np.asarray(image)
        if (ph, pw) != (h, w):
            image = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        drain(enc.encode(frame))
    drain(enc.encode(None))
    for frame in dec.decode(None):
        out.append(frame.to_ndarray(format="rgb24")[:h, :w])
    return out


def downscale_half(frames: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Each frame at half width and height (area averaging, as a platform's transcoder would)."""
    out = []
    for image in frames:
        h, w = image.shape[:2]
        out.append(cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA))
    return out


def crop_box(height: int, width: int, fraction: float, anchor: str = "center") -> tuple[int, int, int, int]:
    """(top, left, new_height, new_width) of a crop that removes `fraction` of each dimension."""
    if not 0 <= fraction < 1:
        raise ValueError(f"crop fraction must be in [0, 1), got {fraction}")
    if anchor not in CROP_ANCHORS:
        raise ValueError(f"anchor must be one of {CROP_ANCHORS}, got {anchor!r}")
    nh, nw = round(height * (1 - fraction)), round(width * (1 - fraction))
    if anchor == "center":
        top, left = (height - nh) // 2, (width - nw) // 2
    else:
        vertical, horizontal = anchor.split("-")
        top = 0 if vertical == "top" else height - nh
        left = 0 if horizontal == "left" else width - nw
    return top, left, nh, nw


def crop_fraction(
    frames: Iterable[np.ndarray], fraction: float = 0.1, anchor: str = "center"
) -> list[np.ndarray]:
    """Cut `fraction` of the width and of the height away (kept: (1-f)^2 of the area), at `anchor`."""
    out = []
    for image in frames:
        top, left, nh, nw = crop_box(image.shape[0], image.shape[1], fraction, anchor)
        out.append(np.ascontiguousarray(image[top : top + nh, left : left + nw]))
    return out


def middle_clip(frames: Sequence[np.ndarray], seconds: float = 2.0, fps: float = 25.0) -> list[np.ndarray]:
    """The `seconds`-long run of frames centred in the video (all of it if it is shorter)."""
    count = min(len(frames), max(1, round(seconds * fps)))
    start = (len(frames) - count) // 2
    return list(frames[start : start + count])

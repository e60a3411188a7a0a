"""Person (foreground) segmentation of video frames with mediapipe's selfie segmenter.

We use the legacy `mediapipe.solutions.selfie_segmentation` graph with `model_selection=0`, the
general-purpose 256x256 model that ships inside the wheel (no download). It is fast (a few ms a
frame on a CPU) and good enough for what the prepare step needs from it: where the person is, so
that the region labels can tell hair/neck/torso from background. Fine detail comes from the face
landmarks, not from this mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lokitalk.errors import InputError


def _as_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame [H,W,3], got {frame.dtype} {frame.shape}")
    # mediapipe's packet creator wants a C-contiguous buffer
    return np.ascontiguousarray(frame)


def segment_person(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Person probability of each RGB uint8 frame, as [N,H,W] uint8 (probability * 255).

    One SelfieSegmentation instance serves the whole sequence (building the graph costs far
    more than running it). All frames must have the same size.
    """
    from mediapipe.python.solutions import selfie_segmentation  # heavy import: only when used

    out: list[np.ndarray] = []
    with selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        for frame in frames:
            frame = _as_rgb_uint8(frame)
            if out and frame.shape[:2] != out[0].shape:
                raise ValueError(f"frame size changed from {out[0].shape} to {frame.shape[:2]}")
            mask = segmenter.process(frame).segmentation_mask  # float32 [H,W] in [0,1]
            out.append(np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8))
    if not out:
        raise InputError("no frames to segment: the video decoded to zero frames")
    return np.stack(out)

"""The crop policy: one fixed square for the whole clip, around the person, at most 512 px.

A NeRF needs a static camera, so the crop never follows the head frame by frame. Policy:
- face size s = the median of the larger side of the detected face boxes (sampled frames);
- the square's side is `head_to_side` x s (head, hair, neck and shoulders: the region the
  avatar renders), grown to contain every sampled face box with a margin of s/2, and never
  larger than the frame's shorter side (then the whole shorter side is used);
- centre: horizontally on the median face centre; vertically `centre_drop` x s below it, so the
  neck and shoulders are in and the empty space above the hair is out; shifted as little as
  needed to stay inside the frame;
- the crop is resized (area interpolation) to min(side, `max_size`) px; it is never upscaled,
  and the output side is even (H.264 needs even sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropConfig:
    max_size: int = 512
    head_to_side: float = 3.0
    centre_drop: float = 0.35
    box_margin: float = 0.5


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    side: int  # square crop in source pixels
    out_size: int  # output side in pixels

    @property
    def scale(self) -> float:
        """Output pixels per source pixel."""
        return self.out_size / self.side

    def apply(self, image: np.ndarray) -> np.ndarray:
        crop = image[self.y0:self.y0 + self.side, self.x0:self.x0 + self.side]
        if self.out_size == self.side:
            return np.ascontiguousarray(crop)
        return cv2.resize(crop, (self.out_size, self.out_size), interpolation=cv2.INTER_AREA)

    def to_source(self, points_xy: np.ndarray) -> np.ndarray:
        """Output pixel coordinates -> source pixel coordinates."""
        return points_xy / self.scale + np.array([self.x0, self.y0])


def choose_crop(face_boxes: np.ndarray, width: int, height: int, config: CropConfig = CropConfig()) -> CropBox:
    """face_boxes [S,4] (x0,y0,x1,y1) source pixels, NaN rows ignored."""
    boxes = face_boxes[np.isfinite(face_boxes).all(1)]
    if len(boxes) == 0:
        raise ValueError("choose_crop needs at least one face box")
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    s = float(np.median(sizes))
    centre_x = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    centre_y = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2)) + config.centre_drop * s
    extent = max(boxes[:, 2].max() - boxes[:, 0].min(), boxes[:, 3].max() - boxes[:, 1].min())
    side = max(config.head_to_side * s, extent + 2 * config.box_margin * s)
    side = int(round(min(side, width, height)))
    x0 = int(round(np.clip(centre_x - side / 2, 0, width - side)))
    y0 = int(round(np.clip(centre_y - side / 2, 0, height - side)))
    out = min(side, config.max_size)
    out -= out % 2
    return CropBox(x0=x0, y0=y0, side=side, out_size=out)

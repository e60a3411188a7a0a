"""Train/test split held out in time: the last `test_fraction` of the clip, contiguous.

Frames are correlated in time, so a random split would leak test frames' neighbours into
training. A gap of `gap` frames between the two keeps the boundary frames honest too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray

    def to_json(self) -> dict:
        return {"policy": "last fraction held out in time", "train": self.train.tolist(),
                "test": self.test.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "Split":
        return cls(np.array(data["train"], int), np.array(data["test"], int))


def temporal_split(num_frames: int, test_fraction: float = 0.1, gap: int = 0) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    test_count = max(1, int(round(num_frames * test_fraction)))
    if test_count + gap >= num_frames:
        raise ValueError(f"{num_frames} frames are too few for a {test_fraction:.0%} test split")
    test = np.arange(num_frames - test_count, num_frames)
    train = np.arange(0, num_frames - test_count - gap)
    return Split(train, test)

"""How deep a blink the face mesh sees in *real* frames at a given size: the ceiling of blink_amp.

    python benchmarks/blink_ceiling.py AVATAR_DIR... [--scales 0.5,1.0]

`blink_amp` (benchmarks/blink_response.py) divides the open-minus-closed eye ratio that the face
mesh measures on rendered frames by the prepared one. If the landmarker itself saw less of a
blink in small frames, a model could never reach 1. This takes the avatar's real training
frames at its closed eyes (at or below the 2nd percentile of the eye ratio) and as many at its
open eyes (nearest the median), shrinks them to each scale, and prints the measured contrast
over the prepared one: about 1 means the measure can see whole blinks at that size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from blink_response import rendered_eye_ratio
from lokitalk.data.avatar import load_avatar, resize_image


def blink_ceiling(avatar, scale: float) -> dict:
    train = avatar.split.train
    ratio = avatar.eye_ratio[train].mean(1)
    closed = train[ratio <= np.percentile(ratio, 2)]
    open_ = train[np.argsort(np.abs(ratio - np.median(ratio)))[: len(closed)]]
    camera = avatar.camera.scaled(scale)
    measured = {name: np.nanmean(rendered_eye_ratio(np.stack([resize_image(avatar.frame(int(i)), camera)
                                                              for i in frames])))
                for name, frames in (("open", open_), ("closed", closed))}
    prepared = ratio[np.isin(train, open_)].mean() - ratio[np.isin(train, closed)].mean()
    contrast = measured["open"] - measured["closed"]
    return {"avatar": avatar.root.name, "size": camera.width, "closed_frames": len(closed),
            "measured": round(float(contrast), 4), "prepared": round(float(prepared), 4),
            "ceiling": round(float(contrast / prepared), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatars", nargs="+", type=Path)
    parser.add_argument("--scales", default="0.5,1.0")
    args = parser.parse_args()
    for root in args.avatars:
        avatar = load_avatar(root)
        for scale in (float(s) for s in args.scales.split(",")):
            print(blink_ceiling(avatar, scale), flush=True)


if __name__ == "__main__":
    main()

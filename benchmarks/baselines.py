"""The two trivial baselines of an avatar's test split, on every metric `evaluate` reports for them.

    python benchmarks/baselines.py AVATAR_DIR... [--train-seconds S] [--scale 1.0]

For each avatar: the mean training image and the nearest training frame (an oracle) against the
test frames (the last 10 % in time), with PSNR, SSIM, LPIPS (AlexNet) and, for the nearest
frame, LMD from the prepared landmarks. The same numbers `lokitalk evaluate` writes under
`baselines` in metrics.json, without a model. One JSON row per avatar.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar, resize_image, training_frames
from lokitalk.evaluate.baselines import trivial_baselines
from lokitalk.evaluate.run import _lpips
from lokitalk.face_model import load_face_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("avatars", nargs="+", type=Path)
    parser.add_argument("--train-seconds", type=float, default=None, help="baselines from the first S s of training frames")
    parser.add_argument("--scale", type=float, default=1.0, help="the size the model renders, as a fraction")
    args = parser.parse_args()
    for root in args.avatars:
        avatar = load_avatar(root)
        camera = avatar.camera.scaled(args.scale)
        seen, test = training_frames(avatar, args.train_seconds), avatar.split.test
        train_frames = [resize_image(avatar.frame(int(i)), camera) for i in seen]
        real = [resize_image(avatar.frame(int(i)), camera) for i in test]
        landmarks = avatar.landmarks[..., :2] * args.scale
        result = trivial_baselines(np.stack(train_frames), np.stack(real), _lpips, landmarks[seen], landmarks[test],
                                   (avatar.valid[seen], avatar.valid[test]), load_face_template().mouth_points)
        result.pop("nearest_training_frame_indices")
        print(json.dumps({"avatar": root.name, "train_seconds": args.train_seconds, "scale": args.scale,
                          "training_frames": len(seen), "test_frames": len(test),
                          **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()

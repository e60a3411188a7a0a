"""The error budget of a trained model on its own training frames, to set beside the test one.

    python benchmarks/train_error_budget.py MODEL_DIR [--frames 24] [--device cpu]

`lokitalk evaluate` writes the test split's error budget (eval/metrics.json, `error_budget`).
A region that is poor there may be underfit (poor on the frames it trained on too) or not
generalise (good on training frames only); this renders N evenly spaced training frames and
prints one JSON row: their mean PSNR and the same per-region budget
(lokitalk.evaluate.run.error_budget).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from lokitalk.data.avatar import load_avatar, resize_image, training_frames
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import error_budget, reference_frames, render_test
from lokitalk.render.loading import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    trained = load_trained(args.model_dir, args.device)
    avatar = load_avatar(trained.avatar_dir)
    pool = training_frames(avatar, None)
    frames = pool[np.linspace(0, len(pool) - 1, min(args.frames, len(pool))).round().astype(int)]
    rendered, _ = render_test(trained, avatar, frames)
    camera = avatar.camera.scaled(trained.image_scale)
    real, labels = reference_frames(avatar, frames, camera)
    budget = error_budget(rendered, real, labels, resize_image(avatar.background(), camera))
    psnr = float(np.mean([metrics.psnr(p, r) for p, r in zip(rendered, real)]))
    keys = ("pixel_share", "error_share", "psnr", "psnr_if_perfect")
    print(json.dumps({"model": str(args.model_dir), "split": "train", "frames": int(len(frames)), "psnr": round(psnr, 2),
                      "error_budget": {name: {k: round(float(v[k]), 3) for k in keys}
                                       for name, v in budget.items() if isinstance(v, dict)}}))


if __name__ == "__main__":
    main()

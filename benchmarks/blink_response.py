"""How visibly the rendered eyes close: model variants commanded to blink on held-out frames.

    python benchmarks/blink_response.py AVATAR_DIR [--preset tiny] [--steps 3000]
        [--variants plain,eyes] [--frames 12] [--device auto] [--out runs/blink_response]
    python benchmarks/blink_response.py AVATAR_DIR --models MODEL_DIR... [--frames 12]

With `--models`, the same measure on models already trained on AVATAR_DIR (nothing is trained).

A clip's test split (its last 10 %) may hold no blink at all, so re-enacting it says little about
the eyes. Instead each variant trains from the same seed on the training frames, then renders
`--frames` test frames twice, with their own pose and lip feature but the eye ratio set to the
person's open eyes (the training median) and to their closed eyes (the training 2nd
percentile). The face mesh measures the eye ratio of both renders. The script reports
`blink_amp`, the rendered open-minus-closed eye ratio over the commanded one (1 = the eyes close
as much as the person's really do, 0 = blinks are invisible), the fraction of frames whose
rendered closed eyes are below the open ones, and the evaluate figures on the plain test split
(PSNR, eye PSNR, eye-ratio error). Variants: `plain` (the preset as is) and `eyes` (a share of the
rays drawn in the eye region and extra photometric weight there: `--eye-fraction`, `--eye-weight`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.evaluate.run import evaluate
from lokitalk.face_model import load_face_template
from lokitalk.prepare.landmarks import track_landmarks
from lokitalk.prepare.signals import align_to_head_frame, eye_ratio
from lokitalk.render.frames import frame_conditioning, render_frame
from lokitalk.render.loading import load_trained
from lokitalk.train.config import preset
from lokitalk.train.trainer import choose_device, train


def rendered_eye_ratio(frames: np.ndarray) -> np.ndarray:
    """Mean eye ratio of both eyes per frame (NaN where no face was found)."""
    points, found = track_landmarks(frames)
    template = load_face_template()
    out = np.full(len(frames), np.nan)
    if found.any():
        out[found] = eye_ratio(align_to_head_frame(points[found], template), template).mean(1)
    return out


def render_blink_pairs(model_dir: Path, avatar, count: int, device: str) -> dict:
    """Render `count` test frames with open and with closed commanded eyes (no landmarker needed,
    so this half runs on a GPU machine without mediapipe). Returns frames uint8 [N,H,W,3] under
    "open" and "closed", the test frame indices, and the commanded open/closed eye ratios."""
    trained = load_trained(model_dir, device)
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    train_ratio = avatar.eye_ratio[avatar.split.train]
    open_eyes = np.median(train_ratio, 0).astype(np.float32)
    closed_eyes = np.percentile(train_ratio, 2, axis=0).astype(np.float32)
    test = avatar.split.test
    picks = test[np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)]
    renders = {"open": [], "closed": []}
    with trained.acceleration.autocast(trained.device):
        for index in picks:
            for name, eyes in (("open", open_eyes), ("closed", closed_eyes)):
                cond = dict(frame_conditioning(avatar, int(index)), eye_ratio=torch.from_numpy(eyes))
                renders[name].append(render_frame(trained.model, avatar, cond, trained.grid, trained.render_config,
                                                  background, scale=trained.image_scale))
    return {"open": np.stack(renders["open"]), "closed": np.stack(renders["closed"]), "indices": picks,
            "commanded_open": open_eyes, "commanded_closed": closed_eyes}


def measure_blink_pairs(pairs) -> dict:
    """blink_amp and closes_fraction of rendered open/closed pairs (`render_blink_pairs`, or the
    npz it was saved to): the face mesh's eye ratio of both renders."""
    measured = {name: rendered_eye_ratio(np.asarray(pairs[name])) for name in ("open", "closed")}
    both = ~np.isnan(measured["open"]) & ~np.isnan(measured["closed"])
    open_eyes, closed_eyes = np.asarray(pairs["commanded_open"]), np.asarray(pairs["commanded_closed"])
    commanded = float(open_eyes.mean() - closed_eyes.mean())
    contrast = measured["open"][both] - measured["closed"][both]
    return {"blink_amp": round(float(contrast.mean() / commanded), 3) if both.any() else None,
            "closes_fraction": round(float((contrast > 0).mean()), 3) if both.any() else None,
            "blink_frames": int(both.sum()),
            "commanded_open": round(float(open_eyes.mean()), 4), "commanded_closed": round(float(closed_eyes.mean()), 4)}


def blink_response(model_dir: Path, avatar, count: int, device: str) -> dict:
    pairs = render_blink_pairs(model_dir, avatar, count, device)
    return measure_blink_pairs(pairs) | {"_renders": {"open": list(pairs["open"]), "closed": list(pairs["closed"])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--variants", default="plain,eyes")
    parser.add_argument("--eye-fraction", type=float, default=0.15)
    parser.add_argument("--eye-weight", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/blink_response"))
    parser.add_argument("--models", type=Path, nargs="+", help="measure these trained models instead")
    args = parser.parse_args()
    device = str(choose_device(args.device))
    avatar = load_avatar(args.avatar)
    if args.models:
        for model_dir in args.models:
            blink = blink_response(model_dir, avatar, args.frames, device)
            blink.pop("_renders")
            print(json.dumps({"model": str(model_dir), **blink}), flush=True)
        return
    rows = []
    for variant in args.variants.split(","):
        config = replace(preset(args.preset, "region"), steps=args.steps)
        if variant == "eyes":
            config = replace(config, eye_fraction=args.eye_fraction, eye_weight=args.eye_weight)
        elif variant != "plain":
            raise SystemExit(f"unknown variant {variant!r}: plain or eyes")
        model_dir = args.out / f"{args.avatar.name}_{variant}"
        shutil.rmtree(model_dir, ignore_errors=True)
        start = time.perf_counter()
        train(args.avatar, model_dir, config, device=device, show_progress=False)
        train_s = time.perf_counter() - start
        metrics = evaluate(model_dir, device=device, write_video=False)
        blink = blink_response(model_dir, avatar, args.frames, device)
        renders = blink.pop("_renders")
        strip = np.concatenate([np.concatenate(renders["open"][:4], 1), np.concatenate(renders["closed"][:4], 1)], 0)
        import cv2

        cv2.imwrite(str(model_dir / "blink_open_closed.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        row = {"variant": variant, "steps": args.steps, "eye_fraction": config.eye_fraction,
               "eye_weight": config.eye_weight, "train_s": round(train_s, 1), **blink}
        row.update({k: metrics.get(k) for k in ("psnr", "psnr_eyes", "psnr_mouth", "eye_ratio_error", "lmd")})
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / f"{args.avatar.name}_results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

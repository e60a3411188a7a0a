"""How much the rendered lips move: model variants re-enacting held-out frames from their real signals.

    python benchmarks/lip_response.py AVATAR_DIR [--preset tiny] [--steps 3000] [--variants region,global]
        [--device auto] [--out runs/lip_response]

Each variant trains from the same seed on the avatar's training frames, then renders every test
frame (the last 10 %, never trained on) from its own real lip feature, eye ratio and pose. The
face mesh tracks the rendered frames and the real ones at the same size, and the script reports:
`amp`, std of the rendered mouth opening / std of the real one measured the same way (1 = the
lips move as much as they really do), `r`, their correlation over time, and the evaluate figures
(PSNR, mouth PSNR, LPIPS, LMD). Variants: the deformation kinds, `region` and `global`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.evaluate.run import evaluate
from lokitalk.face_model import load_face_template
from lokitalk.prepare.landmarks import track_landmarks
from lokitalk.prepare.signals import align_to_head_frame, mouth_opening
from lokitalk.train.config import preset
from lokitalk.train.trainer import choose_device, train


def opening_of(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening (head frame, template units) of each frame, and where a face was found."""
    points, found = track_landmarks(frames)
    template = load_face_template()
    opening = np.full(len(frames), np.nan)
    if found.any():
        opening[found] = mouth_opening(align_to_head_frame(points[found], template), template)
    return opening, found


def opening_match(rendered_opening: np.ndarray, real_opening: np.ndarray) -> tuple[float, float, int] | None:
    """(amplitude ratio, correlation, frames) of a rendered mouth-opening track against the real
    one, over the frames where both have a face; None with fewer than 3 such frames."""
    both = ~np.isnan(real_opening) & ~np.isnan(rendered_opening)
    if both.sum() < 3:
        return None
    return (float(np.std(rendered_opening[both]) / np.std(real_opening[both])),
            float(np.corrcoef(rendered_opening[both], real_opening[both])[0, 1]), int(both.sum()))


def lip_motion(rendered: np.ndarray, indices: np.ndarray, avatar, scale: float) -> dict:
    """How the rendered mouth moves against the real one on the same frames: `lip_amp` (std of the
    rendered mouth opening / std of the real one) and `lip_r` (their correlation)."""
    camera = avatar.camera.scaled(scale)
    real = np.stack([resize_image(avatar.frame(int(i)), camera) for i in indices])
    match = opening_match(opening_of(rendered)[0], opening_of(real)[0])
    if match is None:
        return {"lip_amp": None, "lip_r": None}
    return {"lip_amp": round(match[0], 3), "lip_r": round(match[1], 3)}


def lip_sensitivity(model_dir: Path, avatar, device: str = "cpu", count: int = 5) -> float:
    """Mean colour change (0-1) over the mouth pixels of `count` test frames when the lip feature
    is moved by two training standard deviations: near 0 means the lip path is dead."""
    import torch

    from lokitalk.prepare.masks import Region
    from lokitalk.render.frames import frame_conditioning, render_frame
    from lokitalk.render.loading import load_trained

    trained = load_trained(model_dir, device)
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    spread = avatar.lip_feature[avatar.split.train].std(0)
    test = avatar.split.test
    changes = []
    for index in test[np.linspace(0, len(test) - 1, count).round().astype(int)]:
        cond = frame_conditioning(avatar, int(index))
        moved = dict(cond, lip_feature=torch.from_numpy((avatar.lip_feature[index] + 2 * spread).astype(np.float32)))
        a, b = (render_frame(trained.model, avatar, c, trained.grid, trained.render_config, background,
                             scale=trained.image_scale).astype(float) for c in (cond, moved))
        mouth = resize_image(avatar.labels(int(index)), camera, nearest=True) == Region.MOUTH
        changes.append(np.abs(a - b)[mouth].mean() / 255.0)
    return float(np.mean(changes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--variants", default="region,global")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/lip_response"))
    args = parser.parse_args()
    device = str(choose_device(args.device))
    avatar = load_avatar(args.avatar)
    rows = []
    real_opening = None
    for variant in args.variants.split(","):
        config = replace(preset(args.preset, variant), steps=args.steps)
        model_dir = args.out / f"{args.avatar.name}_{variant}"
        shutil.rmtree(model_dir, ignore_errors=True)
        start = time.perf_counter()
        train(args.avatar, model_dir, config, device=device, show_progress=False)
        train_s = time.perf_counter() - start
        metrics = evaluate(model_dir, device=device, write_video=False, save_frames=True)
        saved = np.load(model_dir / "eval" / "test_frames.npz")
        if real_opening is None:
            camera = avatar.camera.scaled(metrics["image_scale"])
            real = np.stack([resize_image(avatar.frame(int(i)), camera) for i in saved["indices"]])
            real_opening, _ = opening_of(real)
        amp, r, frames = opening_match(opening_of(saved["frames"])[0], real_opening)
        row = {"variant": variant, "steps": args.steps, "train_s": round(train_s, 1), "amp": round(amp, 3),
               "r": round(r, 3), "frames": frames}
        row.update({k: metrics.get(k) for k in ("psnr", "psnr_mouth", "lpips", "lmd")})
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / f"{args.avatar.name}_results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

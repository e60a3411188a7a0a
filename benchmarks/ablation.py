"""Train variants of one preset that differ in a few training settings, and compare them on the
same held-out frames.

    python benchmarks/ablation.py AVATAR_DIR --variant NAME[:KEY=VALUE,...] [--variant ...]
        [--preset tiny] [--deformation region] [--steps 3000] [--device auto] [--out runs/ablation]

Example: `--variant base --variant box:box_sampling=true --variant box48:box_sampling=true,samples_per_ray=48`.
KEY is any `TrainConfig` field (lokitalk/train/config.py), or `deformation.FIELD` / `field.FIELD` /
`grid.FIELD` for the model's `DeformationConfig` / `FieldConfig` / canonical `TriPlaneConfig`
(e.g. `deformation.position_encoding=grid`, `grid.max_resolution=256`);
values are parsed as JSON where they can be (true, 0.1, 48), else taken as text. Every variant trains from the same seed on the
avatar's training frames and is evaluated on its test split (the last 10 %, never trained on),
beside the two trivial baselines. One JSON row per variant is printed and kept in
OUT/<avatar>_results.json: training wall time, test PSNR / mouth PSNR / eye PSNR / LPIPS / LMD,
render FPS, and the field evaluations per rendered ray (what rendering costs). With `--motion`
also how the face moves on the test frames: lip `amp`/`r` (benchmarks/lip_response.py: rendered
mouth opening against the real one) and `blink_amp` (benchmarks/blink_response.py: the eyes
commanded shut on test frames) and `lip_sensitivity` (the mouth's mean colour change when the lip
feature moves by 2 training standard deviations: about 0 when the lip path is dead).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate.run import evaluate
from lokitalk.render.loading import load_trained
from lokitalk.train.config import TrainConfig, preset
from lokitalk.train.trainer import choose_device, train


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition(":")
    from lokitalk.model.deformation import DeformationConfig
    from lokitalk.model.encoding import TriPlaneConfig
    from lokitalk.model.field import FieldConfig

    known = ({f.name for f in fields(TrainConfig)} - {"model", "preset"}
             | {f"deformation.{f.name}" for f in fields(DeformationConfig)} - {"deformation.kind"}
             | {f"field.{f.name}" for f in fields(FieldConfig)} - {"field.grid"}
             | {f"grid.{f.name}" for f in fields(TriPlaneConfig)})
    overrides = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"{key!r} is not a TrainConfig setting ({', '.join(sorted(known))})")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def configured(config: TrainConfig, steps: int, overrides: dict) -> TrainConfig:
    """The preset with the variant's settings: plain keys on the TrainConfig, dotted ones on the model."""
    model = config.model
    for key, value in overrides.items():
        part, _, name = key.partition(".")
        if part == "grid":  # the canonical grid sits inside the field's config
            model = replace(model, field=replace(model.field, grid=replace(model.field.grid, **{name: value})))
        elif name:
            model = replace(model, **{part: replace(getattr(model, part), **{name: value})})
    plain = {k: v for k, v in overrides.items() if "." not in k}
    return replace(config, model=model, steps=steps, **plain)


def rendered_evaluations(model_dir: Path, avatar, device: str) -> float:
    """Field evaluations per ray over the first 3 test frames, with the render defaults."""
    from render_speed import evaluations_per_ray

    trained = load_trained(model_dir, device)
    return evaluations_per_ray(trained, avatar, trained.render_config, trained.grid, frames=3)


def motion_response(model_dir: Path, avatar, device: str) -> dict:
    import numpy as np
    from blink_response import blink_response
    from lip_response import lip_motion, lip_sensitivity

    saved = np.load(model_dir / "eval" / "test_frames.npz")
    lips = lip_motion(saved["frames"], saved["indices"], avatar, load_trained(model_dir, device).image_scale)
    blink = blink_response(model_dir, avatar, 12, device)
    blink.pop("_renders")
    return lips | {"blink_amp": blink["blink_amp"], "blink_closes": blink["closes_fraction"],
                   "lip_sensitivity": round(lip_sensitivity(model_dir, avatar, device), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--deformation", default="region")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--motion", action="store_true", help="also measure lip and blink response")
    args = parser.parse_args()
    device = str(choose_device(args.device))
    avatar = load_avatar(args.avatar)
    variants = [parse_variant(v) for v in args.variant]
    print(json.dumps({"machine": platform.machine(), "processor": platform.processor(), "device": device,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": args.preset,
                      "steps": args.steps, "avatar": args.avatar.name}), flush=True)
    rows = []
    for name, overrides in variants:
        config = configured(preset(args.preset, args.deformation), args.steps, overrides)
        model_dir = args.out / f"{args.avatar.name}_{name}"
        shutil.rmtree(model_dir, ignore_errors=True)
        start = time.perf_counter()
        train(args.avatar, model_dir, config, device=device, show_progress=False)
        train_s = time.perf_counter() - start
        metrics = evaluate(model_dir, device=device, write_video=False, save_frames=args.motion)
        row = {"variant": name, **overrides, "train_s": round(train_s, 1),
               **{k: (round(metrics[k], 4) if isinstance(metrics.get(k), float) else metrics.get(k))
                  for k in ("psnr", "psnr_mouth", "psnr_eyes", "lpips", "lmd", "lmd_mouth_shape", "mouth_offset_px",
                            "face_depth_error_cm", "lower_face_depth_error_cm", "eye_ratio_error", "render_fps")},
               "evaluated_per_ray": round(rendered_evaluations(model_dir, avatar, device), 2),
               "mean_image_psnr": round(metrics["baselines"]["mean_image_psnr"], 3),
               "nearest_frame_psnr": round(metrics["baselines"]["nearest_training_frame_psnr"], 3),
               **{f"{short}_{m}": (round(metrics["baselines"][f"{long}_{m}"], 4)
                                   if metrics["baselines"].get(f"{long}_{m}") is not None else None)
                  for short, long in (("mean_image", "mean_image"), ("nearest_frame", "nearest_training_frame"))
                  for m in ("lpips", "lmd") if f"{long}_{m}" in metrics["baselines"]}}
        if args.motion:
            row.update(motion_response(model_dir, avatar, device))
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = args.out / f"{args.avatar.name}_results.json"
    out.write_text(json.dumps(rows, indent=2))
    best = max(rows, key=lambda r: r["psnr"])
    print(f"best PSNR: {best['variant']} {best['psnr']:.2f} dB "
          f"(mean image {best['mean_image_psnr']:.2f}, nearest frame {best['nearest_frame_psnr']:.2f})")


if __name__ == "__main__":
    main()

"""A model rendered with other sample placements than it was trained with: what the test figures lose.

    python benchmarks/render_sampling_check.py MODEL_DIR [--frames 16] [--samples 32,24]
        [--set samples_per_ray=64,fine_samples=12 ...]

Renders the same evenly spaced test frames with the model's own render settings and with box
sampling switched (and, with `--samples`, other sample counts; each `--set` is one more setting:
RenderConfig fields changed from the model's own), and prints PSNR, LPIPS and LMD (the landmarker
of `evaluate`) for each, with the field evaluations per ray. Answers whether a model trained with
denser samples (box sampling) can be rendered with the cheaper placement, and whether a model
trained with a proposal stage gains from more coarse or fine samples when rendering.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import _lip_and_eye_metrics, _lpips, reference_frames, render_test
from lokitalk.render.loading import load_trained

from render_speed import evaluations_per_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--samples", default="", help="extra sample counts to try with the switched placement")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="FIELD=VALUE,...",
                        help="one more setting: the model's own render settings with these integer fields changed")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    trained = load_trained(args.model_dir, args.device)
    avatar = load_avatar(trained.avatar_dir)
    test = avatar.split.test
    frames = test[np.linspace(0, len(test) - 1, min(args.frames, len(test))).round().astype(int)]
    real, _ = reference_frames(avatar, frames, avatar.camera.scaled(trained.image_scale))
    own = trained.render_config
    settings = [("own", own), ("switched", replace(own, box_sampling=not own.box_sampling))]
    settings += [(f"switched_{n}", replace(own, box_sampling=not own.box_sampling, samples_per_ray=int(n)))
                 for n in args.samples.split(",") if n]
    for spec in args.sets:
        changes = dict(item.split("=", 1) for item in spec.split(","))
        settings.append((spec, replace(own, **{key: int(value) for key, value in changes.items()})))
    print(json.dumps({"model": args.model_dir, "frames": len(frames), "own_box_sampling": own.box_sampling,
                      "own_samples": own.samples_per_ray, "own_fine_samples": own.fine_samples}))
    for name, config in settings:
        run = replace(trained, render_config=config)
        rendered, fps = render_test(run, avatar, frames)
        lips = _lip_and_eye_metrics(rendered, avatar, frames, trained.image_scale)
        lpips = _lpips(rendered, real)
        print(json.dumps({"setting": name, "box_sampling": config.box_sampling, "samples": config.samples_per_ray,
                          "fine_samples": config.fine_samples, "psnr": round(float(np.mean([metrics.psnr(p, r) for p, r in zip(rendered, real)])), 3),
                          "lpips": None if lpips is None else round(float(lpips.mean()), 4),
                          "lmd": None if lips.get("lmd") is None else round(lips["lmd"], 3),
                          "mouth_offset_px": None if lips.get("mouth_offset_px") is None else round(lips["mouth_offset_px"], 3),
                          "evaluated_per_ray": round(evaluations_per_ray(run, avatar, config, trained.grid, frames=1), 2),
                          "fps": round(fps, 3)}), flush=True)


if __name__ == "__main__":
    main()

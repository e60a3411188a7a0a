"""What box sampling and a proposal stage cost in a training step and a rendered frame, on a trained model.

    python benchmarks/sampling_speed.py MODEL_DIR [--settings fixed_span,box,fine12] [--steps 12] [--frames 3]
        [--prune 1e-4] [--device cpu]

Settings: `fixed_span` (the model's samples over near..far), `box` (over each ray's part inside the
field's box, `RenderConfig.box_sampling`), `fineN` (a proposal stage: the density alone at the
model's samples, the full field at N samples drawn from their weights, `RenderConfig.fine_samples`),
`fineNu` (the same plus the coarse samples pruning keeps, `RenderConfig.fine_with_coarse`).
Training: the model's own avatar and ray sampler; each batch is rendered (forward + backward,
photometric and opacity losses) with every setting, alternating batch by batch so that a noisy,
shared machine slows all alike. Rendering: whole test frames, the same alternation. Prints one
JSON row per setting: median seconds, full field evaluations per ray (`*_evaluated`), the proposal's
density-only ones (`step_coarse`), and the ratio to the first setting. The model's quality is not the
question here (one model, several samplings).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar, resize_image, training_frames
from lokitalk.data.rays import RaySampler
from lokitalk.model.renderer import RenderConfig
from lokitalk.render.frames import frame_conditioning, render_frame
from lokitalk.render.loading import load_trained
from lokitalk.train.config import training_rays

from prune_speed import step, training_config
from render_speed import evaluations_per_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--settings", default="fixed_span,box")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--prune", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    trained = load_trained(args.model_dir, args.device)
    model, device = trained.model, trained.device
    avatar = load_avatar(trained.avatar_dir)
    train = training_config(trained.meta)
    sampler = RaySampler(avatar, training_rays(train), frames=training_frames(avatar, None), seed=0)
    settings = {name: _setting(name) for name in args.settings.split(",")}
    rows = {name: {"step_s": [], "step_evaluated": [], "step_coarse": [], "frame_s": [], "frame_evaluated": []}
            for name in settings}
    model.train()
    for k in range(args.steps + 1):  # the first batch warms up and is not counted
        batch = sampler.sample()
        for name, setting in settings.items():
            config = RenderConfig(samples_per_ray=train.samples_per_ray, stratified=True, prune=args.prune, **setting)
            counts: dict = {}
            seconds, _, evaluated, _ = step(model, batch, trained.grid, config, train, k, device, counts)
            if k:
                rows[name]["step_s"].append(seconds)
                rows[name]["step_evaluated"].append(evaluated / len(batch["origins"]))
                rows[name]["step_coarse"].append(counts["coarse"] / len(batch["origins"]))
    model.eval()
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    frames = avatar.split.test[np.linspace(0, len(avatar.split.test) - 1, args.frames + 1).round().astype(int)]
    for k, index in enumerate(frames):
        for name, setting in settings.items():
            config = replace(trained.render_config, **setting)
            start = time.perf_counter()
            with torch.no_grad(), trained.acceleration.autocast(device):
                render_frame(model, avatar, frame_conditioning(avatar, int(index)), trained.grid, config, background,
                             scale=trained.image_scale)
            if k:
                rows[name]["frame_s"].append(time.perf_counter() - start)
    for name, setting in settings.items():  # counted apart: the timed renders do not report their evaluations
        config = replace(trained.render_config, **setting)
        rows[name]["frame_evaluated"].append(evaluations_per_ray(trained, avatar, config, trained.grid, frames=2))
    print(json.dumps({"model": args.model_dir, "device": str(device), "machine": platform.machine(),
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
                      "frames": args.frames, "trained_with_box": train.box_sampling, "trained_fine_samples": train.fine_samples,
                      "prune": args.prune}))
    first = next(iter(rows))
    base = {key: float(np.median(rows[first][key])) for key in ("step_s", "frame_s")}
    for name, row in rows.items():
        print(json.dumps({"setting": name,
                          **{f"{key}_median": round(float(np.median(v)), 4) for key, v in row.items()},
                          "step_ratio": round(float(np.median(row["step_s"])) / base["step_s"], 2),
                          "frame_ratio": round(float(np.median(row["frame_s"])) / base["frame_s"], 2)}))


def _setting(name: str) -> dict:
    """A setting's name -> the RenderConfig fields it sets."""
    if name == "fixed_span":
        return {"box_sampling": False, "fine_samples": 0, "fine_with_coarse": False}
    if name == "box":
        return {"box_sampling": True, "fine_samples": 0, "fine_with_coarse": False}
    union = name.endswith("u")  # fineNu: the fine samples and the coarse ones pruning keeps
    count = name[4:-1] if union else name[4:]
    if name.startswith("fine") and count.isdigit() and int(count) > 0:
        return {"box_sampling": False, "fine_samples": int(count), "fine_with_coarse": union}
    raise SystemExit(f"unknown setting {name!r}: fixed_span, box, fineN or fineNu (N > 0)")


if __name__ == "__main__":
    main()

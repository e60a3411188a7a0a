"""Render speed of a trained model under the renderer's speed settings, and what they change.

    python benchmarks/render_speed.py MODEL_DIR [--sizes native,512] [--frames 20] [--compile auto]
        [--device auto]

Settings, each timed warm on the same test frames (median of `--frames`):
- `plain`: every occupied sample evaluated, eager;
- `terminated`: early ray termination at the render default (rays stop once 0.1 % of the light
  gets through);
- `tightened`: termination, and the occupancy grid tightened to cells above `--occupancy-threshold`
  (1/m; training keeps cells above 0.25) plus one cell of margin;
- `compiled`: termination plus torch.compile of the per-sample path (deformation and field);
  `--compile auto` does this on CUDA only (on the CPU a compile takes ~30 s per model);
- for a model trained with a proposal stage (`fine_samples`), two cheaper placements, compiled
  where `compiled` is: `half_coarse`, half the coarse samples for the density pass the fine ones
  are drawn from; `no_proposal`, the plain sampler with none of them.
For each it prints frames per second, field evaluations per ray and the largest pixel difference
from `plain` (in grey levels, 0-255) on the timed frames, and the PSNR against the real frames.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.evaluate import metrics
from lokitalk.render.frames import frame_conditioning, render_frame
from lokitalk.render.loading import load_trained
from lokitalk.train.accelerate import accelerate_model
from lokitalk.train.trainer import choose_device


def timed_frames(trained, avatar, config, size: int | None, frames: int, grid) -> tuple[np.ndarray, list[float]]:
    scale = trained.image_scale if size is None else size / avatar.camera.width
    background = resize_image(avatar.background(), avatar.camera.scaled(scale))
    indices = [int(avatar.split.test[i % len(avatar.split.test)]) for i in range(frames + 2)]
    images, times = [], []
    with trained.acceleration.autocast(trained.device):
        for k, index in enumerate(indices):
            if trained.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            image = render_frame(trained.model, avatar, frame_conditioning(avatar, index), grid, config,
                                 background, scale=scale)
            if trained.device.type == "cuda":
                torch.cuda.synchronize()
            if k >= 2:  # two warm-up frames (allocator, compilation)
                times.append(time.perf_counter() - start)
                images.append(image)
    return np.stack(images), times


def evaluations_per_ray(trained, avatar, config, grid, size: int | None = None, frames: int = 1,
                        chunk: int = 16384) -> float:
    """Field evaluations per ray over the first `frames` whole test frames, rendered like
    `render_frame` (in chunks of rays; each ray is marched on its own, so the count is the same)."""
    from lokitalk.data.rays import frame_rays
    from lokitalk.render.frames import render_batch

    scale = trained.image_scale if size is None else size / avatar.camera.width
    cam = avatar.camera.scaled(scale)
    background = torch.as_tensor(resize_image(avatar.background(), cam)).reshape(-1, 3).float() / 255
    total = rays = 0
    with torch.no_grad(), trained.acceleration.autocast(trained.device):
        for index in avatar.split.test[:frames]:
            cond = frame_conditioning(avatar, int(index))
            origins, dirs = frame_rays(cond["rotation"], cond["translation"], cam.focal_px, cam.cx, cam.cy,
                                       cam.width, cam.height, trained.device)
            for first in range(0, len(origins), chunk):
                part = slice(first, first + chunk)
                batch = dict(cond, origins=origins[part], directions=dirs[part],
                             background=background[part].to(trained.device))
                total += render_batch(trained.model, batch, grid, config).evaluated
            rays += len(origins)
    return total / rays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--sizes", default="native,512")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--occupancy-threshold", type=float, default=4.0)
    args = parser.parse_args()
    device = choose_device(args.device)
    trained = load_trained(args.model_dir, device)
    avatar = load_avatar(trained.avatar_dir)
    compile_too = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    print(json.dumps({"model": str(args.model_dir), "device": str(device), "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
                      "threads": torch.get_num_threads(), "kind": trained.model.config.deformation.kind}), flush=True)
    base = trained.render_config
    tight = copy.deepcopy(trained.grid)
    tight.tighten(args.occupancy_threshold)
    settings = [("plain", replace(base, termination=0.0), False, trained.grid),
                ("terminated", base, False, trained.grid), ("tightened", base, False, tight)]
    if compile_too:
        settings.append(("compiled", base, True, trained.grid))
    if base.fine_samples:  # the speed / quality trade of a proposal model's placements
        settings += [("half_coarse", replace(base, samples_per_ray=max(8, base.samples_per_ray // 2)), compile_too,
                      trained.grid),
                     ("no_proposal", replace(base, fine_samples=0), compile_too, trained.grid)]
    for size_name in args.sizes.split(","):
        size = None if size_name == "native" else int(size_name)
        reference = None
        scale = trained.image_scale if size is None else size / avatar.camera.width
        count = len(avatar.split.test)
        real = np.stack([resize_image(avatar.frame(int(avatar.split.test[i % count])), avatar.camera.scaled(scale))
                         for i in range(2, args.frames + 2)])
        for name, config, compiled, grid in settings:
            accelerate_model(trained.model, replace(trained.acceleration, compile=compiled))
            images, times = timed_frames(trained, avatar, config, size, args.frames, grid)
            reference = images if reference is None else reference
            median = float(np.median(times))
            print(json.dumps({"size": size_name, "setting": name, "fps": round(1 / median, 2),
                              "median_ms": round(median * 1000, 1),
                              "evaluations_per_ray": round(evaluations_per_ray(trained, avatar, config, grid, size), 2),
                              "psnr": round(float(np.mean([metrics.psnr(a, b) for a, b in zip(images, real)])), 3),
                              "max_pixel_diff": int(np.abs(images.astype(int) - reference).max()),
                              "mean_pixel_diff": round(float(np.abs(images.astype(int) - reference).mean()), 4),
                              "compile_fallback": getattr(trained.model.point_runner, "fallback_reason", None)}),
                  flush=True)


if __name__ == "__main__":
    main()

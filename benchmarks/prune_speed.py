"""What look-ahead pruning (RenderConfig.prune) saves and changes in a training step, on a trained model.

    python benchmarks/prune_speed.py MODEL_DIR [--prunes 0,1e-4,1e-3] [--steps 20] [--device cpu]

For each of `--steps` training batches (the model's own avatar, its preset's ray sampler), every
setting renders the same rays with the same stratified sample positions, takes the photometric
and opacity losses and their gradient; the settings alternate batch by batch so that a noisy,
shared machine slows them alike. Prints one JSON row per setting: the median step time (forward +
backward), field evaluations with gradients per ray, the loss, and the gradient's cosine
similarity and relative difference against the unpruned one (all parameters together).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.data.rays import RaySampler
from lokitalk.model.renderer import RenderConfig
from lokitalk.render.frames import render_batch
from lokitalk.render.loading import load_trained
from lokitalk.train.config import TrainConfig, training_rays
from lokitalk.train.losses import opacity_loss, photometric_loss


def training_config(meta: dict) -> TrainConfig:
    """The model's training settings that shape a batch (rays, samples, mouth and eye weights)."""
    keys = {"rays_per_batch", "samples_per_ray", "mouth_fraction", "mouth_weight", "eye_fraction", "eye_weight",
            "image_scale", "alpha_weight", "box_sampling", "fine_samples"}
    return TrainConfig(**{k: v for k, v in meta.get("train", {}).items() if k in keys})


def step(model, batch, grid, config: RenderConfig, train: TrainConfig, seed: int, device,
         counts: dict | None = None) -> tuple[float, float, int, torch.Tensor]:
    """One forward and backward pass -> (seconds, loss, evaluations, flat gradient); `counts`, if
    given, also gets the proposal stage's density-only evaluations ("coarse")."""
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = render_batch(model, batch, grid, config, generator)
    labels = batch["labels"].to(device)
    loss = photometric_loss(out.rgb, batch["rgb"].to(device), labels, train.mouth_weight, train.eye_weight)
    loss = loss + train.alpha_weight * opacity_loss(out.opacity, batch["alpha"].to(device))
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    if counts is not None:
        counts["coarse"] = out.coarse_evaluated
    return seconds, loss.item(), out.evaluated, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--prunes", default="0,1e-4,1e-3")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    trained = load_trained(args.model_dir, args.device)
    model, device = trained.model, trained.device
    model.train()
    avatar = load_avatar(trained.avatar_dir)
    train = training_config(trained.meta)
    sampler = RaySampler(avatar, training_rays(train), frames=training_frames(avatar, None), seed=0)
    prunes = [float(p) for p in args.prunes.split(",")]
    if prunes[0] != 0:
        prunes = [0.0] + prunes
    rows = {p: {"seconds": [], "loss": [], "evaluated": [], "cosine": [], "relative": []} for p in prunes}
    for k in range(args.steps + 1):  # the first batch warms up and is not counted
        batch = sampler.sample()
        reference = None
        for p in prunes:
            config = RenderConfig(samples_per_ray=train.samples_per_ray, stratified=True,
                                  box_sampling=train.box_sampling, prune=p)
            seconds, loss, evaluated, grads = step(model, batch, trained.grid, config, train, k, device)
            if p == 0:
                reference = grads
            if k == 0:
                continue
            row = rows[p]
            row["seconds"].append(seconds)
            row["loss"].append(loss)
            row["evaluated"].append(evaluated / len(batch["origins"]))
            row["cosine"].append(float(torch.nn.functional.cosine_similarity(grads, reference, dim=0)))
            row["relative"].append(float((grads - reference).norm() / reference.norm()))
    base = np.median(rows[0.0]["seconds"])
    print(json.dumps({"model": args.model_dir, "device": str(device), "machine": platform.machine(),
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
                      "rays_per_batch": train.rays_per_batch, "samples_per_ray": train.samples_per_ray}))
    for p, row in rows.items():
        print(json.dumps({"prune": p, "step_s_median": round(float(np.median(row["seconds"])), 4),
                          "speedup": round(float(base / np.median(row["seconds"])), 2),
                          "evaluated_per_ray": round(float(np.mean(row["evaluated"])), 2),
                          "loss_mean": round(float(np.mean(row["loss"])), 6),
                          "gradient_cosine_min": round(float(np.min(row["cosine"])), 5),
                          "gradient_relative_diff_median": round(float(np.median(row["relative"])), 5)}))


if __name__ == "__main__":
    main()

"""How far off are the tracked poses? Fit a frozen model's pose to a few frames' pixels.

    python benchmarks/pose_probe.py MODEL_DIR [--frames 417,419] [--count 6] [--steps 60]

For each frame (default: `--count` training frames spread over the clip's yaw range) the model is
frozen and only that frame's pose correction (lokitalk.train.pose_refine) is fitted to 4 batches
of its rays by Adam. Prints one JSON row per frame: its tracked yaw, the correction (degrees, mm)
and the rays' PSNR before and after. A diagnostic of the tracker, not an evaluation: a correction
fitted to a test frame's own pixels must never stand in for a test metric.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar
from lokitalk.data.rays import RayBatchConfig, RaySampler
from lokitalk.render.frames import render_batch
from lokitalk.render.loading import load_trained
from lokitalk.train.pose_refine import TRANSLATION_UNIT_M, FramePoseCorrections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--frames", default=None, help="comma-separated frame indices (default: training frames by yaw)")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rays", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()

    trained = load_trained(args.model_dir, "cpu")
    for parameter in trained.model.parameters():
        parameter.requires_grad_(False)
    avatar = load_avatar(trained.avatar_dir)
    yaw = np.load(trained.avatar_dir / "pose.npz")["euler_deg"][:, 0]
    if args.frames:
        frames = [int(v) for v in args.frames.split(",")]
    else:
        by_yaw = avatar.split.train[np.argsort(yaw[avatar.split.train])]
        frames = by_yaw[np.linspace(0, len(by_yaw) - 1, args.count).round().astype(int)].tolist()
    sampler = RaySampler(avatar, RayBatchConfig(args.rays, 0, 0.0, trained.image_scale),
                         frames=np.arange(avatar.num_frames), seed=0)
    config = replace(trained.render_config, stratified=False)
    for frame in frames:
        corrections = FramePoseCorrections(avatar.num_frames, np.array([frame]))
        optimizer = torch.optim.SparseAdam(list(corrections.parameters()), lr=args.lr)
        batches = [sampler.sample(frame) for _ in range(4)]

        def error(batch):
            return ((render_batch(trained.model, corrections(batch), trained.grid, config).rgb - batch["rgb"]) ** 2).mean()

        with torch.no_grad():
            before = float(np.mean([float(error(b)) for b in batches]))
        for step in range(args.steps):
            optimizer.zero_grad()
            error(batches[step % len(batches)]).backward()
            optimizer.step()
        with torch.no_grad():
            after = float(np.mean([float(error(b)) for b in batches]))
        row = corrections.rows([frame])[0].detach().double().numpy()
        print(json.dumps({"frame": frame, "split": "train" if frame in set(avatar.split.train.tolist()) else "test",
                          "tracked_yaw_deg": round(float(yaw[frame]), 2),
                          "rotation_deg": np.degrees(row[:3]).round(2).tolist(),
                          "translation_mm": (row[3:] * TRANSLATION_UNIT_M * 1000).round(2).tolist(),
                          "psnr_before": round(-10 * np.log10(before), 2), "psnr_after": round(-10 * np.log10(after), 2)}),
              flush=True)


if __name__ == "__main__":
    main()

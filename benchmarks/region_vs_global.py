"""Region vs global deformation on the same data and step budget: train, evaluate, time, render FPS.

    python benchmarks/region_vs_global.py AVATAR_DIR... --out OUT [--preset full] [--train-seconds 150]
        [--steps N] [--arms region,global] [--device auto]

For each avatar: a short calibration run of the first arm measures steps per second after
warm-up (torch.compile included), and the step budget is set so that one arm trains for about
`--train-seconds` (or `--steps` fixes it); every arm then trains that many steps from scratch.
Each arm is evaluated on the avatar's held-out test frames (the last 10 % in time) with
`lokitalk.evaluate` (PSNR, SSIM, LPIPS, mouth/eye PSNR, both trivial baselines on the same frames),
then render speed is measured warm (after 3 unmeasured frames): at the size the model was trained
at, and at 512x512 (the camera rescaled). Training wall time and peak GPU memory are recorded.

Written to OUT: results.json (rewritten after every arm, so a killed run keeps what finished),
<avatar>_<arm>_test.npz (rendered test frames, uint8, thinned to evenly spaced frames when the
file would pass `--frames-mb`, the device tool's per-file limit) and <avatar>_<arm>_blink.npz
(`--blink-frames` test frames rendered with open and with closed commanded eyes), for measuring
LMD, lip motion and blink depth later on a machine with the landmarker
(benchmarks/lmd_from_frames.py); <avatar>_<arm>_worst.png and _train_log.csv.
Runs on the CPU too (slowly: use --preset tiny --steps 20 to check the script itself).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from blink_response import render_blink_pairs
from lokitalk.data.avatar import Avatar, load_avatar, resize_image
from lokitalk.evaluate.run import evaluate
from lokitalk.render.frames import frame_conditioning, render_frame
from lokitalk.render.loading import TrainedModel, load_trained
from lokitalk.train.config import preset
from lokitalk.train.trainer import choose_device, train


def steps_per_second(log_path: Path) -> float:
    """From a train_log.csv: rate over the second half of the logged steps (compile excluded)."""
    with open(log_path) as f:
        rows = [(int(r["step"]), float(r["elapsed_s"])) for r in csv.DictReader(f)]
    half = rows[min(len(rows) // 2, len(rows) - 2):]
    if len(half) < 2 or half[-1][1] <= half[0][1]:
        raise RuntimeError(f"too few logged steps in {log_path} to measure a rate: raise --calibration-steps")
    return (half[-1][0] - half[0][0]) / (half[-1][1] - half[0][1])


def save_thinned(source: Path, target: Path, limit_mb: float) -> int:
    """Copy a saved test-frame npz (frames, indices), keeping evenly spaced frames when the
    compressed file is over `limit_mb`; returns how many frames were kept."""
    saved = np.load(source)
    frames, indices = saved["frames"], saved["indices"]
    keep = len(frames)
    while True:
        picks = np.linspace(0, len(frames) - 1, keep).round().astype(int)
        tmp = target.with_name(target.name + ".tmp.npz")
        np.savez_compressed(tmp, frames=frames[picks], indices=indices[picks])
        size_mb = tmp.stat().st_size / 2**20
        if size_mb <= limit_mb or keep <= 1:
            tmp.replace(target)
            return keep
        keep = max(1, int(keep * limit_mb / size_mb * 0.95))


def render_speed(trained: TrainedModel, avatar: Avatar, size: int | None, frames: int = 20) -> dict:
    """Warm frames per second rendering test frames; `size`: rescale the camera to size x size."""
    scale = trained.image_scale if size is None else size / avatar.camera.width
    camera = avatar.camera.scaled(scale)
    background = resize_image(avatar.background(), camera)
    indices = [int(avatar.split.test[i % len(avatar.split.test)]) for i in range(frames + 3)]

    def one(index: int) -> None:
        render_frame(trained.model, avatar, frame_conditioning(avatar, index), trained.grid, trained.render_config,
                     background, scale=scale)

    with trained.acceleration.autocast(trained.device):
        for index in indices[:3]:
            one(index)
        if trained.device.type == "cuda":
            torch.cuda.synchronize()
        times = []
        for index in indices[3:]:
            start = time.perf_counter()
            one(index)
            if trained.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"size": [camera.width, camera.height], "frames": frames, "median_ms": round(median * 1000, 2),
            "fps": round(1.0 / median, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatars", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/region_vs_global"))
    parser.add_argument("--preset", default="full")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--calibration-steps", type=int, default=80)
    parser.add_argument("--arms", default="region,global")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fps-frames", type=int, default=20, help="frames timed per render-speed measure")
    parser.add_argument("--blink-frames", type=int, default=12,
                        help="test frames rendered with open and closed eyes (0: none)")
    parser.add_argument("--frames-mb", type=float, default=15.0,
                        help="largest saved test-frame file; more frames are thinned evenly")
    args = parser.parse_args()
    device = choose_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                           f"CPU {platform.processor() or platform.machine()}", "torch": torch.__version__,
                           "python": platform.python_version()}, "preset": args.preset, "runs": []}

    def save() -> None:
        tmp = args.out / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(args.out / "results.json")

    for avatar_dir in args.avatars:
        name = avatar_dir.name
        arms = args.arms.split(",")
        steps = args.steps
        if steps is None:  # calibrate: steps per second of the first arm, compile warm-up excluded
            scratch = args.work / f"{name}_calibration"
            shutil.rmtree(scratch, ignore_errors=True)
            config = replace(preset(args.preset, arms[0]), steps=args.calibration_steps, log_every=5,
                             checkpoint_every=10**9)
            train(avatar_dir, scratch, config, device=str(device), show_progress=False)
            rate = steps_per_second(scratch / "train_log.csv")
            steps = max(100, int(rate * args.train_seconds) // 100 * 100)
            results.setdefault("calibration", {})[name] = {"steps_per_s": round(rate, 2), "steps": steps}
            print(f"{name}: {rate:.1f} steps/s -> {steps} steps per arm", flush=True)
        for arm in arms:
            model_dir = args.work / f"{name}_{arm}"
            shutil.rmtree(model_dir, ignore_errors=True)
            config = replace(preset(args.preset, arm), steps=steps)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            summary = train(avatar_dir, model_dir, config, device=str(device), show_progress=False)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            metrics = evaluate(model_dir, device=str(device), write_video=False, save_frames=True)
            trained = load_trained(model_dir, str(device))
            avatar = load_avatar(trained.avatar_dir)
            speed_native = render_speed(trained, avatar, None, args.fps_frames)
            speed_512 = render_speed(trained, avatar, 512, args.fps_frames)
            run = {"avatar": name, "arm": arm, "steps": steps, "train_wall_s": summary["elapsed_s"],
                   "compiled": summary["compiled"], "compile_fallback": summary["compile_fallback"],
                   "amp": summary["amp"], "peak_gpu_mem_gib": None if peak is None else round(peak, 2),
                   "metrics": metrics, "render_native": speed_native, "render_512": speed_512}
            results["runs"].append(run)
            save()
            for suffix, source in (("worst.png", model_dir / "eval" / "worst_frames.png"),
                                   ("train_log.csv", model_dir / "train_log.csv")):
                shutil.copyfile(source, args.out / f"{name}_{arm}_{suffix}")
            run["saved_test_frames"] = save_thinned(model_dir / "eval" / "test_frames.npz",
                                                    args.out / f"{name}_{arm}_test.npz", args.frames_mb)
            if args.blink_frames:
                pairs = render_blink_pairs(model_dir, avatar, args.blink_frames, str(device))
                np.savez_compressed(args.out / f"{name}_{arm}_blink.npz", **pairs)
            save()
            print(json.dumps({k: run[k] for k in ("avatar", "arm", "steps", "train_wall_s", "peak_gpu_mem_gib")}
                             | {m: metrics.get(m) for m in ("psnr", "lpips", "ssim", "psnr_mouth")}
                             | {"fps_native": speed_native["fps"], "fps_512": speed_512["fps"]}), flush=True)
    save()


if __name__ == "__main__":
    main()

"""Region-specific vs global deformation on the same avatars, preset and step budget.

    python benchmarks/train_compare.py --clips id01_a,id07_a --preset tiny [--steps N] [--device auto]
        [--kinds region,global] [--eval-frames 30] [--out runs/train_compare]

For each clip: prepare it (cached), train one model per deformation kind from the same seed,
evaluate both on the same held-out test frames (the last 10 % of the clip), and print one table
row per model with the test metrics, the two trivial baselines on the same frames, training
wall time, peak memory and render speed. JSON copy in OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import time
from pathlib import Path

import torch

from lokitalk.evaluate.run import evaluate
from lokitalk.prepare.pipeline import prepare
from lokitalk.prepare.runner import Reporter
from lokitalk.provenance.consent import create_consent, save_consent
from lokitalk.train.config import preset, with_steps
from lokitalk.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB -> MB, whole process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--clips", default="id01_a,id07_a")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--kinds", default="region,global", help="deformation kinds to train, in this order")
    parser.add_argument("--eval-frames", type=int, default=None)
    parser.add_argument("--avatars", type=Path, default=None, help="folder of prepared avatars (default OUT/avatars)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "train_compare")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    avatars = args.avatars or args.out / "avatars"
    print(f"# {platform.machine()}, device {device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if device.startswith('cuda') else ''}, torch {torch.__version__}, "
          f"preset {args.preset}, steps {args.steps or 'preset default'}")
    header = ["clip", "deformation", "steps", "train_s", "peak_mb", "psnr", "ssim", "lpips", "lmd", "psnr_mouth",
              "psnr_eyes", "eye_err", "fps", "size", "mean_img", "nearest", "test_frames"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for clip in args.clips.split(","):
        avatar = avatars / clip
        if not (avatar / "summary.json").exists():
            video = args.data / "videos" / f"{clip}.mp4"
            wav = video.with_suffix(".wav")
            # a third-party research clip (public talking-head dataset): recorded as such, in our
            # own output folder and never beside the shared data
            consent = save_consent(create_consent(video, f"third-party research clip {clip}"),
                                   avatars / f"{clip}.consent.json")
            prepare(video, avatar, audio=wav if wav.exists() else None, reporter=Reporter(quiet=True),
                    consent=consent)
        for kind in args.kinds.split(","):
            model_dir = args.out / f"{clip}_{kind}"
            shutil.rmtree(model_dir, ignore_errors=True)
            config = with_steps(preset(args.preset, kind), args.steps)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            summary = train(avatar, model_dir, config, device=device, show_progress=False)
            train_s = time.perf_counter() - start
            memory = peak_memory_mb(device)
            m = evaluate(model_dir, max_frames=args.eval_frames, device=device, write_video=True)

            def fmt(value, digits=2):
                return "-" if value is None else f"{value:.{digits}f}"

            row = {"clip": clip, "deformation": kind, "steps": summary["steps"], "train_s": round(train_s, 1),
                   "peak_mb": round(memory), **{k: m[k] for k in ("psnr", "ssim", "lpips", "lmd", "psnr_mouth",
                                                                  "psnr_eyes", "eye_ratio_error", "render_fps",
                                                                  "render_size", "frames")},
                   "baselines": m["baselines"]}
            rows.append(row)
            print(f"| {clip} | {kind} | {row['steps']} | {row['train_s']} | {row['peak_mb']} | {fmt(m['psnr'])} | "
                  f"{fmt(m['ssim'], 3)} | {fmt(m['lpips'], 3)} | {fmt(m['lmd'])} | {fmt(m['psnr_mouth'])} | "
                  f"{fmt(m['psnr_eyes'])} | {fmt(m['eye_ratio_error'], 3)} | {fmt(m['render_fps'])} | "
                  f"{m['render_size'][0]} | {fmt(m['baselines']['mean_image_psnr'])} | "
                  f"{fmt(m['baselines']['nearest_training_frame_psnr'])} | {m['frames']} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
